#!/usr/bin/env node
import * as cdk from "aws-cdk-lib";
import { RelayStack } from "../lib/relay-stack";

const app = new cdk.App();
const codePath: string = app.node.tryGetContext("relayCode");
const workspaces: string = app.node.tryGetContext("workspaces") ?? "";
new RelayStack(app, "CairnRelay", {
  codePath,
  workspaces: workspaces.split(",").filter((w) => w.length > 0),
});
