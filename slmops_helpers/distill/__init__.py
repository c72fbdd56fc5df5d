"""Section 2, distillation: move a teacher's knowledge into a smaller, faster student.

One module per part of the recipe (``teacher``, ``student``, ``loss``, ``config``, ``claims``);
the names notebooks and labs use are importable from here. The two stages:

1. **Teacher data.** ``generate_teacher_outputs`` answers the training prompts with the
   teacher, in batches, caching every answer on disk (keyed by model, prompt and
   generation settings) so that an interrupted run resumes and a corrupted entry is
   regenerated. ``validate_outputs`` drops empty, malformed, truncated or degenerate
   answers before anything trains on them.
2. **Student training.** ``build_student`` keeps some of the teacher's decoder blocks
   (DistilBERT's initialisation; ``max_blocks_within`` says how many fit a parameter
   budget, ``block_choices`` offers which); ``make_loss_fn`` plugs the loss
   ``α·T²·KL + (1−α)·CE`` into ``training.train``. With ``alpha=0`` it is plain
   cross-entropy: on teacher outputs that is sequence-level distillation, on the human
   references it trains the undistilled student.

>>> student = build_student(teacher, block_choices(30, 7)["both ends"])  # doctest: +SKIP
>>> loss_fn = make_loss_fn(student, teacher, KDConfig(temperature=2.0, alpha=0.5))  # doctest: +SKIP
>>> training.train(student, train_examples, val_examples, TrainConfig(), pad_id, loss_fn=loss_fn)  # doctest: +SKIP
"""

from .claims import SEED_CLAIMS, claims_vs_measured
from .config import SIZES, DistillConfig, get_config
from .loss import (
    KL_KINDS,
    KDConfig,
    TeacherLogitCache,
    answer_logits,
    hidden_state_loss,
    kd_loss,
    kl_divergence,
    make_loss_fn,
    soften,
    temperature_view,
)
from .student import (
    PassWeights,
    block_choices,
    build_student,
    check_same_vocabulary,
    count_config_parameters,
    keep_every,
    max_blocks_within,
    pass_weights,
    student_config,
)
from .teacher import (
    REASONS,
    TeacherOutputs,
    ValidationReport,
    balanced_subset,
    encode_distillation_set,
    entry_path,
    generate_teacher_outputs,
    model_fingerprint,
    output_problem,
    read_entry,
    teacher_cache_dir,
    validate_outputs,
)

__all__ = [
    "KL_KINDS",
    "REASONS",
    "SEED_CLAIMS",
    "SIZES",
    "DistillConfig",
    "KDConfig",
    "TeacherLogitCache",
    "TeacherOutputs",
    "ValidationReport",
    "answer_logits",
    "balanced_subset",
    "block_choices",
    "build_student",
    "check_same_vocabulary",
    "claims_vs_measured",
    "count_config_parameters",
    "encode_distillation_set",
    "entry_path",
    "generate_teacher_outputs",
    "get_config",
    "hidden_state_loss",
    "kd_loss",
    "keep_every",
    "kl_divergence",
    "make_loss_fn",
    "max_blocks_within",
    "model_fingerprint",
    "output_problem",
    "pass_weights",
    "PassWeights",
    "read_entry",
    "soften",
    "student_config",
    "teacher_cache_dir",
    "temperature_view",
    "validate_outputs",
]
