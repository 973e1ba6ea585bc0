export * from './config';
export * from './prices';
export * from './providers';
export * from './runtime-command';
export * from './policy';
export * from './platform';
