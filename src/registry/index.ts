/** OCI distribution client: see client.ts (requests), auth.ts, credentials.ts, errors.ts, reference.ts. */
export * from './auth';
export * from './client';
export * from './credentials';
export * from './errors';
export * from './reference';
