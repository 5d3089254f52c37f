/** Entry of the page (bundled by esbuild): one typed client for the page, tickets from the app's backend. */
import { createRoot } from 'react-dom/client';
import { createTypedClient, ticketFrom } from '@realtime-blueprint/client';
import { RealtimeProvider } from '@realtime-blueprint/client/react';
import type { Schema } from '../schema.js';
import { App } from './chat.js';

const me = new URLSearchParams(location.search).get('user') ?? 'guest';
const client = createTypedClient<Schema>({
  // The app's backend mints the ticket (POST /api/ticket): the page never holds AWS credentials.
  ticket: ticketFrom('/api/ticket', { headers: { 'x-demo-user': me } }),
  transports: ['ws', 'sse', 'poll'],
});

createRoot(document.getElementById('app')!).render(
  <RealtimeProvider client={client}>
    <App me={me} />
  </RealtimeProvider>,
);
