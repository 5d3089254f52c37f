/**
 * Jest snapshot serializer for CloudFormation templates: masks asset hashes (64 hex characters: Lambda bundle S3
 * keys, the container image tag) so that editing a handler or the service does not churn the snapshots, while every
 * other value stays in them.
 */
import type { Config, NewPlugin, Printer, Refs } from 'pretty-format';

const ASSET_HASH = /[0-9a-f]{64}/g;
const MASK = '[ASSET-HASH]';

const serializer: NewPlugin = {
  test: (val: unknown) => typeof val === 'string' && /[0-9a-f]{64}/.test(val),
  serialize: (val: string, config: Config, indentation: string, depth: number, refs: Refs, printer: Printer) =>
    printer(val.replace(ASSET_HASH, MASK), config, indentation, depth, refs),
};

module.exports = serializer;
