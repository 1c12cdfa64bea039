"""The tiny random-weight diffusion models live in pipeline (the app's self-test builds them too)."""

from pipeline.tiny_models import (  # noqa: F401
    copy_model_folder,
    make_pickle_checkpoint,
    make_tiny_sd_folder,
    make_tiny_sd_pipeline,
    make_tiny_sd_single_file,
    put_in_hub_cache,
    write_config_folder,
)
