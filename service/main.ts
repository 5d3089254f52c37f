import pino from 'pino';
import { ConfigError } from '../core/config';
import { serviceConfigFromEnv } from './config';
import { RealtimeServer } from './realtime-server';

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
  const service = new RealtimeServer(config, { logger });
  await service.listen();
  // The drain starts when ECS task metadata says the task is being stopped (before SIGTERM; see
  // service/ecs.ts) or on SIGTERM, whichever comes first. SIGTERM then waits for that drain
  // (DRAIN_TIMEOUT_MS at most), closes and exits 0.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, draining: service.isDraining }, 'stopping');
    service
      .drain()
      .then(() => service.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`sse service failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
