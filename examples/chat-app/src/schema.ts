/** The app's channels and their events: one schema for the backend's publishes and the page's subscriptions. */
export type Schema = {
  /** `chat:<room>`: users talk (published by the page over the WebSocket), the backend greets. */
  'chat:*': { message: { from: string; text: string } };
  /** `scores:<match>`: only the backend publishes (the namespace accepts backends only). */
  'scores:*': { goal: { team: 'home' | 'away'; minute: number } };
};

export const ROOM = 'chat:demo' as const;
export const MATCH = 'scores:final' as const;
