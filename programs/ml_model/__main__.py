"""`pulumi up` entry point: read the stack's config, deploy the model."""

import ml_model_program
import pulumi

ml_model_program.deploy(ml_model_program.ModelConfig.from_pulumi_config(pulumi.Config()))
