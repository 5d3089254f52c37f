/**
 * The smallest CDK app that uses the blueprint as a construct: your stack, your VPC and alarm topic, tickets for your
 * Cognito users, and the package's prebuilt Lambda and SSE bundles (no esbuild, no repository checkout).
 *
 *   npm install aws-cdk-lib constructs realtime-blueprint
 *   npx cdk synth --app "npx tsx app.ts"
 */
import { App, Stack } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { RealtimeApi } from 'realtime-blueprint';

const app = new App();
const stack = new Stack(app, 'MyRealtime');

const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
const users = cognito.UserPool.fromUserPoolId(stack, 'Users', 'eu-west-1_EXAMPLE');
const webClient = cognito.UserPoolClient.fromUserPoolClientId(stack, 'WebClient', 'example-app-client-id');

const realtime = new RealtimeApi(stack, 'Realtime', {
  vpc,
  alarmTopic: new sns.Topic(stack, 'Alarms', { enforceSSL: true }),
  ticketApi: { auth: { type: 'cognito', userPool: users, userPoolClients: [webClient] } },
  trustedPrincipals: ['arn:aws:iam::123456789012:role/my-backend'],
  allowedOrigins: ['https://app.example.com'],
  redis: { nodes: 1, removalPolicy: 'destroy' },
  sse: { minTasks: 1 },
});

// Your backend may publish (IAM, and listed in trustedPrincipals above).
realtime.grantPublish(iam.Role.fromRoleArn(stack, 'Backend', 'arn:aws:iam::123456789012:role/my-backend'));
