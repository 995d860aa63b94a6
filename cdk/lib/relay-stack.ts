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
  /** Workspace ids allowed to register (empty: any). */
  readonly workspaces?: string[];
}

export class RelayStack extends cdk.Stack {
  readonly table: dynamodb.Table;
  readonly fn: lambda.Function;
  readonly url: lambda.FunctionUrl;

  constructor(scope: Construct, id: string, props: RelayStackProps) {
    super(scope, id, props);

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
        CAIRN_WORKSPACES: (props.workspaces ?? []).join(","),
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
