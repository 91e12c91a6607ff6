"""Whisper on HF transformers: CLSR language experts (DistilWhisper), language modules on disk,
teacher top-k caches, PEFT methods and pruning."""

# --- CLSR / DistilWhisper ---------------------------------------------------------------------
from speechkd.whisper.clsr import (
    CLSROptions,
    GateNoiseSchedule,
    active_language,
    add_clsr,
    clsr_gate_budget_loss,
    clsr_gates,
    clsr_noise_schedule,
    encoder_token_mask,
    gate_usage,
    installed_languages,
    language_parameter_count,
    remove_language,
    set_active_language,
)
from speechkd.whisper.language_modules import load_language_modules, save_language_modules
from speechkd.whisper.teacher_cache import (
    TeacherCache,
    TeacherCacheWriter,
    TopKTargets,
    topk_kd_loss,
    topk_teacher_logits,
)

__all__ = [
    "CLSROptions",
    "GateNoiseSchedule",
    "TeacherCache",
    "TeacherCacheWriter",
    "TopKTargets",
    "active_language",
    "add_clsr",
    "clsr_gate_budget_loss",
    "clsr_gates",
    "clsr_noise_schedule",
    "encoder_token_mask",
    "gate_usage",
    "installed_languages",
    "language_parameter_count",
    "load_language_modules",
    "remove_language",
    "save_language_modules",
    "set_active_language",
    "topk_kd_loss",
    "topk_teacher_logits",
]

# --- PEFT and pruning (apply_peft, ...) ---------------------------------------------------------
from speechkd.whisper.peft_methods import (  # noqa: E402
    PEFT_METHODS,
    after_optimizer_step,
    apply_peft,
    merge_peft,
    peft_regularization,
    set_base_trainable,
)

__all__ += [
    "PEFT_METHODS",
    "after_optimizer_step",
    "apply_peft",
    "merge_peft",
    "peft_regularization",
    "set_base_trainable",
]
