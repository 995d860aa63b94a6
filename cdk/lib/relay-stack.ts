// The Cairn relay on AWS: one DynamoDB table, one arm64 Lambda (the `cairn-relay-lambda`
// binary, built by `cargo lambda build --release --arm64`), reached through a Function URL.
// The relay authenticates every request itself (device signatures), so the URL has no IAM auth.
import * as cdk from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { Construct } from "constructs";

export interface RelayStackProps extends cdk.StackProps {
  /** Directory holding the built `bootstrap` binary. */
  readonly codePath: string;
  /**
   * The workspaces the relay serves (64-hex ids): required unless `open` is set. A request for
   * any other workspace is refused, registration included.
   */
  readonly workspaces?: string[];
  /**
   * Serve any workspace: the first device to register a workspace id holds it. Off unless set
   * explicitly, and exclusive with `workspaces`.
   */
  readonly open?: boolean;
}

/** The relay's registration environment: an allow-list, or open only when asked for. */
export function registrationEnv(props: Pick<RelayStackProps, "workspaces" | "open">): Record<string, string> {
  const workspaces = props.workspaces ?? [];
  for (const w of workspaces) {
    if (!/^[0-9a-f]{64}$/.test(w)) {
      throw new Error(`RelayStack: workspace id ${JSON.stringify(w)} is not 64 lower-case hex digits`);
    }
  }
  if (props.open === true) {
    if (workspaces.length > 0) {
      throw new Error("RelayStack: set either workspaces or open, not both");
    }
    return { CAIRN_OPEN: "1" };
  }
  if (workspaces.length === 0) {
    throw new Error(
      "RelayStack: name the workspaces the relay serves (context workspaces=ID,ID) or, to let " +
        "any workspace register with the first registration winning, set open (context open=true)",
    );
  }
  return { CAIRN_WORKSPACES: workspaces.join(",") };
}

export class RelayStack extends cdk.Stack {
  readonly table: dynamodb.Table;
  readonly fn: lambda.Function;
  readonly url: lambda.FunctionUrl;

  constructor(scope: Construct, id: string, props: RelayStackProps) {
    super(scope, id, props);
    // Checked before any resource exists: a stack without an allow-list does not synthesise.
    const registration = registrationEnv(props);

    this.table = new dynamodb.Table(this, "Events", {
      partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
      sortKey: { name: "sk", type: dynamodb.AttributeType.NUMBER },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // Replay-cache entries expire by themselves.
      timeToLiveAttribute: "exp",
      // The relay's data is the workspaces' sealed history: never dropped with the stack.
      removalPolicy: cdk.RemovalPolicy.RETAIN,
    });

    this.fn = new lambda.Function(this, "Relay", {
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.ARM_64,
      handler: "bootstrap",
      code: lambda.Code.fromAsset(props.codePath),
      memorySize: 256,
      timeout: cdk.Duration.seconds(30),
      environment: {
        CAIRN_RELAY_TABLE: this.table.tableName,
        ...registration,
        CAIRN_LOG: "info",
      },
    });
    // Least privilege: exactly the item actions the relay uses, on this table only.
    this.fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: [
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:Query",
          "dynamodb:BatchGetItem",
          "dynamodb:BatchWriteItem",
        ],
        resources: [this.table.tableArn],
      }),
    );

    this.url = this.fn.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });

    const alarm = (name: string, metric: cloudwatch.IMetric, threshold: number) =>
      new cloudwatch.Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    alarm("LambdaErrors", this.fn.metricErrors({ period: cdk.Duration.minutes(5) }), 1);
    alarm("LambdaThrottles", this.fn.metricThrottles({ period: cdk.Duration.minutes(5) }), 1);
    // The operations the relay performs (the same as its IAM actions).
    const operations = [
      dynamodb.Operation.GET_ITEM,
      dynamodb.Operation.PUT_ITEM,
      dynamodb.Operation.QUERY,
      dynamodb.Operation.BATCH_GET_ITEM,
      dynamodb.Operation.BATCH_WRITE_ITEM,
    ];
    const period = cdk.Duration.minutes(5);
    alarm(
      "TableThrottles",
      this.table.metricThrottledRequestsForOperations({ operations, period }),
      1,
    );
    alarm("TableSystemErrors", this.table.metricSystemErrorsForOperations({ operations, period }), 1);

    new cdk.CfnOutput(this, "RelayUrl", { value: this.url.url });
  }
}
