export { planTree, parseSourceDateEpoch } from './plan';
export { blobEntriesFromPlan, buildVriftLayer, buildShimLayer, ext4DirSize, ext4FileBlocks, FS_MODEL, plainBlobEntry, SYNTHETIC_INO_BASE } from './blobEntries';
