/**
 * One snapshot per stage of cdk.json, as bin/app.ts builds it. Asset hashes are masked by asset-hash-serializer.ts,
 * so editing a handler or the service does not churn them; any other template change shows up here for review.
 */
import { buildStageApp, STAGES, templateOf } from './support';

describe.each(STAGES)('stage %s', (stage) => {
  test('template: matches the snapshot (asset hashes masked)', () => {
    expect(templateOf(buildStageApp(stage).stack).toJSON()).toMatchSnapshot();
  });
});
