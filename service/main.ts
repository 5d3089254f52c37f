import pino from 'pino';
import { ConfigError } from '../core/config';
import { serviceConfigFromEnv } from './config';
import { SseService } from './server';

/** Entry point of the SSE task: validate the environment, listen, close cleanly on SIGTERM. */
async function main(): Promise<void> {
  let config;
  try {
    config = serviceConfigFromEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const logger = pino({ level: config.logLevel });
  const service = new SseService(config, { logger });
  await service.listen();
  // SIGTERM (Fargate stop, deploy, scale-in): drain within DRAIN_TIMEOUT_MS, then exit 0.
  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping');
    service.drain().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`sse service failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
