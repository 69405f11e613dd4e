export { sha256File, showPath } from './hash';
export { DigestCache, defaultCacheDir, cacheFileFor, CACHE_SUBDIR, OLD_CACHE_FILE, PRUNE_AGE_MS, STALE_TMP_MS, RACY_NS } from './cache';
export type { FileBatch, FileKey, DigestCacheOptions } from './cache';
export { casObjectPath, CAS_DIR, CAS_MAX_LINKS, type CasVariant } from './path';
