"""The Longbow deployment: an AWS CDK v2 app built from one typed settings file.

`settings` reads and checks the file, `build` makes the wheel and the Lambda layer, `contract`
holds what the runtime expects of the resources, `constructs` the units of the stack, `access`
the grants, and `stack` composes them.
"""
