export { sha256File, showPath } from './hash';
export { DigestCache, defaultCacheDir, CACHE_FILE, RACY_NS } from './cache';
export type { FileBatch, FileKey } from './cache';
export { casObjectPath, CAS_DIR, CAS_MAX_LINKS, type CasVariant } from './path';
