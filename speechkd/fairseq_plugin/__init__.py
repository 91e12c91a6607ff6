"""speechkd's fairseq plugin: ``--user-dir $SPEECHKD_ROOT/speechkd/fairseq_plugin``.

fairseq imports this directory as the top-level module ``fairseq_plugin`` and then every
``models/*.py`` and ``tasks/*.py`` again as ``fairseq_plugin.models.<name>``. Every import below is
absolute, and each loaded ``speechkd.fairseq_plugin.*`` module is aliased under the
``fairseq_plugin.*`` name, so each model, criterion and task registers exactly once.
"""

import sys

import speechkd.fairseq_plugin.audio_compat  # noqa: F401
import speechkd.fairseq_plugin.criterions.lfmmi  # noqa: F401
import speechkd.fairseq_plugin.criterions.st_kd  # noqa: F401
import speechkd.fairseq_plugin.criterions.w2v2_distill  # noqa: F401
import speechkd.fairseq_plugin.models.st_students  # noqa: F401
import speechkd.fairseq_plugin.models.w2v2_student  # noqa: F401
import speechkd.fairseq_plugin.tasks.audio_augment  # noqa: F401


def _alias_submodules(prefix: str = "speechkd.fairseq_plugin.", alias: str = "fairseq_plugin."):
    for name, module in list(sys.modules.items()):
        if name.startswith(prefix) and module is not None:
            sys.modules.setdefault(alias + name[len(prefix) :], module)


_alias_submodules()
