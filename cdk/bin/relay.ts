#!/usr/bin/env node
import * as cdk from "aws-cdk-lib";
import { RelayStack } from "../lib/relay-stack";

const app = new cdk.App();
const codePath: string = app.node.tryGetContext("relayCode");
// The workspaces served (`-c workspaces=ID,ID`), or `-c open=true` to let any register.
const workspaces: string = app.node.tryGetContext("workspaces") ?? "";
const open: unknown = app.node.tryGetContext("open");
new RelayStack(app, "CairnRelay", {
  codePath,
  workspaces: workspaces
    .split(",")
    .map((w) => w.trim())
    .filter((w) => w.length > 0),
  open: open === true || open === "true",
});
