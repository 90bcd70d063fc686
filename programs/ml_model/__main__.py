"""`pulumi up` entry point: read the stack's config, deploy the model.

`ml_model_program` is the package next to this file (Pulumi runs the program
folder with `runpy.run_path`, which puts it first on `sys.path`), the same
code the harness imports from its installed package.
"""

import ml_model_program
import pulumi

ml_model_program.deploy(ml_model_program.ModelConfig.from_pulumi_config(pulumi.Config()))
