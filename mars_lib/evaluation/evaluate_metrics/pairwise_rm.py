"""`evaluate` metric: strict pairwise accuracy, ROC-AUC and reward-gap statistics of a reward model.

Loads offline from this file (no hub-hosted metric script):
    metric = mars_lib.evaluation.metrics.load_evaluate_metric()
    metric.compute(reward_chosen=[...], reward_rejected=[...])
Accuracy is strict: ties count as wrong.
"""
import datasets
import evaluate


class PairwiseRM(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="reward_chosen, reward_rejected: one float per pair",
            features=datasets.Features({"reward_chosen": datasets.Value("float64"),
                                        "reward_rejected": datasets.Value("float64")}))

    def _compute(self, reward_chosen, reward_rejected):
        from mars_lib.evaluation.metrics import rm_metrics
        return rm_metrics(reward_chosen, reward_rejected)
