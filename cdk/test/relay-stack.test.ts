// Assertions on the synthesised template (aws-cdk-lib/assertions), run with node's test runner.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as cdk from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { RelayStack, RelayStackProps } from "../lib/relay-stack";

function codeDir(): string {
  // The asset directory only has to exist for synthesis; deployments use the built binary.
  const code = fs.mkdtempSync(path.join(os.tmpdir(), "cairn-relay-code-"));
  fs.writeFileSync(path.join(code, "bootstrap"), "");
  return code;
}

function template(props: Omit<RelayStackProps, "codePath"> = { workspaces: ["ab".repeat(32)] }): Template {
  const app = new cdk.App();
  const stack = new RelayStack(app, "Test", { codePath: codeDir(), ...props });
  return Template.fromStack(stack);
}

function environment(t: Template): Record<string, unknown> {
  const fns = Object.values(t.findResources("AWS::Lambda::Function")) as {
    Properties: { Environment: { Variables: Record<string, unknown> } };
  }[];
  assert.equal(fns.length, 1);
  return fns[0].Properties.Environment.Variables;
}

test("an unlisted workspace cannot register: no stack without an allow-list unless open is explicit", () => {
  for (const props of [{}, { workspaces: [] }, { open: false }, { workspaces: [], open: false }]) {
    assert.throws(() => template(props), /name the workspaces/, JSON.stringify(props));
  }
  assert.throws(() => template({ workspaces: ["not-an-id"] }), /64 lower-case hex/);
  assert.throws(() => template({ workspaces: ["ab".repeat(32)], open: true }), /not both/);
  // The default stack passes its allow-list and never the open switch.
  const listed = environment(template({ workspaces: ["ab".repeat(32), "cd".repeat(32)] }));
  assert.equal(listed.CAIRN_WORKSPACES, `${"ab".repeat(32)},${"cd".repeat(32)}`);
  assert.ok(!("CAIRN_OPEN" in listed), JSON.stringify(listed));
  // Open only when asked for, and then without an allow-list.
  const open = environment(template({ open: true }));
  assert.equal(open.CAIRN_OPEN, "1");
  assert.ok(!("CAIRN_WORKSPACES" in open), JSON.stringify(open));
});

test("table: pk string + sk number, on demand, PITR, encrypted, TTL on exp", () => {
  template().hasResourceProperties("AWS::DynamoDB::Table", {
    KeySchema: [
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ],
    AttributeDefinitions: Match.arrayWith([
      { AttributeName: "pk", AttributeType: "S" },
      { AttributeName: "sk", AttributeType: "N" },
    ]),
    BillingMode: "PAY_PER_REQUEST",
    PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    SSESpecification: { SSEEnabled: true },
    TimeToLiveSpecification: { AttributeName: "exp", Enabled: true },
  });
});

test("lambda: provided.al2023 on arm64 with the table's name", () => {
  template().hasResourceProperties("AWS::Lambda::Function", {
    Runtime: "provided.al2023",
    Architectures: ["arm64"],
    Handler: "bootstrap",
    Environment: {
      Variables: Match.objectLike({
        CAIRN_RELAY_TABLE: { Ref: Match.stringLikeRegexp("Events") },
        CAIRN_WORKSPACES: "ab".repeat(32),
      }),
    },
  });
});

test("function URL without IAM auth (the relay checks device signatures)", () => {
  template().hasResourceProperties("AWS::Lambda::Url", { AuthType: "NONE" });
});

test("IAM: item actions on this table only, nothing account-wide", () => {
  const t = template();
  const policies = t.findResources("AWS::IAM::Policy");
  const statements = Object.values(policies).flatMap(
    (p) => (p as { Properties: { PolicyDocument: { Statement: unknown[] } } }).Properties.PolicyDocument.Statement,
  ) as { Action: string | string[]; Resource: unknown }[];
  assert.equal(statements.length, 1, JSON.stringify(statements));
  const s = statements[0];
  const actions = ([] as string[]).concat(s.Action);
  for (const a of actions) {
    assert.match(a, /^dynamodb:(GetItem|PutItem|Query|BatchGetItem|BatchWriteItem)$/);
  }
  assert.ok(!actions.includes("dynamodb:*"));
  const tableId = Object.keys(t.findResources("AWS::DynamoDB::Table"))[0];
  assert.deepEqual(s.Resource, { "Fn::GetAtt": [tableId, "Arn"] });
});

test("alarms on lambda errors and throttles and on table throttles and errors", () => {
  const t = template();
  t.resourceCountIs("AWS::CloudWatch::Alarm", 4);
  for (const metric of ["Errors", "Throttles"]) {
    t.hasResourceProperties("AWS::CloudWatch::Alarm", {
      MetricName: metric,
      Namespace: "AWS/Lambda",
      Threshold: 1,
    });
  }
  const alarms = Object.values(t.findResources("AWS::CloudWatch::Alarm")) as {
    Properties: { Metrics?: { Expression?: string; MetricStat?: { Metric: { MetricName: string } } }[] };
  }[];
  const tableMetrics = alarms
    .flatMap((a) => a.Properties.Metrics ?? [])
    .map((m) => m.MetricStat?.Metric.MetricName)
    .filter((n): n is string => n !== undefined);
  assert.ok(tableMetrics.includes("ThrottledRequests"), JSON.stringify(tableMetrics));
  assert.ok(tableMetrics.includes("SystemErrors"), JSON.stringify(tableMetrics));
});
