/**
 * Observability: the dashboard and the alarms (5xx, target health, Lambda errors, Redis CPU, memory and evictions,
 * connections), their actions, and the checks on its props.
 */
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import { Observability } from '../../lib/observability';
import { loadStage } from '../../cost/stage';
import { buildStack, buildStageApp, templateOf, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

describe('the stages of cdk.json as they are (webSocket.mode tasks)', () => {
  test.each(['dev', 'prod'])('%s: as many alarms as the cost planner prices (cost/stage.ts loadStage(stage).alarms)', (stage) => {
    const alarms = Object.keys(templateOf(buildStageApp(stage).stack).findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(loadStage(stage).alarms);
  });
});

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node) with webSocket.mode both', () => {
  let template: Template;
  useStageTemplate('dev', (_s, t) => (template = t), WITH_API_GATEWAY_WEBSOCKETS);

  test('SseUnhealthyTargets alarm: describes a liveness failure, not Redis (a Redis outage no longer fails /healthz)', () => {
    const description = new Capture();
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'UnHealthyHostCount', AlarmDescription: description });
    expect(description.asString()).toMatch(/liveness/);
    expect(description.asString()).not.toMatch(/Redis unreachable/);
  });

  test('Redis alarms: Evictions above 0 and DatabaseMemoryUsagePercentage at or above 80 %, max over the nodes', () => {
    const metricIn = (name: string) => Match.arrayWith([Match.objectLike({ MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: name }) }) })]);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: metricIn('Evictions'),
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: metricIn('DatabaseMemoryUsagePercentage'),
      Threshold: 80,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
  });

  test('observability: a dashboard and alarms for 5xx, target health, Lambda errors, Redis CPU and memory, connections', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => JSON.stringify(a.Properties));
    const has = (re: RegExp) => alarms.filter((a) => re.test(a)).length;
    expect(has(/HTTPCode_ELB_5XX_Count/)).toBe(1);
    expect(has(/HTTPCode_Target_5XX_Count/)).toBe(1);
    expect(has(/UnHealthyHostCount/)).toBe(1);
    expect(has(/"MetricName":"HealthyHostCount"/)).toBe(1);
    expect(has(/ActiveConnectionCount/)).toBe(1);
    expect(has(/"MetricName":"Errors"/)).toBe(10);
    // The fan-out's dead letters (received by their consumer) and waiting work items.
    expect(has(/NumberOfMessagesReceived/)).toBe(1);
    expect(has(/ApproximateAgeOfOldestMessage/)).toBe(1);
    expect(has(/"MetricName":"5xx"/)).toBe(2);
    expect(has(/EngineCPUUtilization/)).toBe(1);
    expect(has(/DatabaseMemoryUsagePercentage/)).toBe(1);
    expect(has(/"MetricName":"Evictions"/)).toBe(1);
  });

  test('no alarm topic configured: alarms carry no actions', () => {
    template.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: Match.absent() });
  });
});

describe('configs that switch behaviour', () => {
  test('alarmTopicArn: every alarm notifies the topic on ALARM and OK', () => {
    const topic = 'arn:aws:sns:eu-west-1:123456789012:ops';
    const template = templateOf(buildStack({ alarmTopicArn: topic }));
    template.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: [topic], OKActions: [topic] });
  });
});

describe('Observability validation', () => {
  test('connection ceiling of 0 percent: fails', () => {
    const stack = buildStack();
    expect(
      () =>
        new Observability(stack, 'Extra', {
          sse: stack.sse,
          redis: stack.redis,
          webSocket: stack.webSocket,
          httpEndpoints: [],
          functions: [],
          connectionCeilingPercent: 0,
        }),
    ).toThrow(/^Realtime-test\/Extra: connectionCeilingPercent \(0\) must be an integer from 1 to 100 percent/);
  });
});