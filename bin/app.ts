#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { BlueprintValidationError } from '../lib/errors';
import { StageConfigError } from './config';
import { buildRealtimeApp } from './realtime-app';

try {
  buildRealtimeApp(new App());
} catch (err) {
  // A bad setting is the user's to fix: print the one line that names it, not a stack trace.
  if (err instanceof StageConfigError || err instanceof BlueprintValidationError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}
