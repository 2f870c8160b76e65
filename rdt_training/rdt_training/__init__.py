"""Fine-tuning RDT on recorded episodes: dataset, statistics, training loop, export.

    from rdt_training import TrainConfig, train
    result = train(TrainConfig(data=["episodes/"], instructions="embeddings/", init="tiny", max_minutes=1))
    result.export_dir   # RDTPolicy.from_paths(result.export_dir, result.export_dir / "vision", None, ...)
"""
from .dataset import DatasetError, EpisodeDataset, collate, index_episodes
from .export import export_model
from .features import FeatureStore
from .instructions import InstructionBank
from .stats import compute_stats, dataset_stats
from .train import TrainConfig, TrainingError, TrainResult, train

__all__ = ["DatasetError", "EpisodeDataset", "collate", "index_episodes", "export_model", "FeatureStore",
           "InstructionBank", "compute_stats", "dataset_stats", "TrainConfig", "TrainingError", "TrainResult",
           "train"]
