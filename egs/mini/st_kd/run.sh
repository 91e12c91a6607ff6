#!/usr/bin/env bash
# Joint speech/text ST KD on the mini en->de set: a tiny wav2vec 2.0 pre-trained on the mini English
# speech and a tiny mBART pre-trained (denoising) on the mini English/German text stand in for
# wav2vec2-large and mbart.cc25; the tiny teacher B (4-4-4, conf/st_kd/arch/tiny_teacher.yaml) and
# its half-depth students (2-2-2) then go through the method stages of the real recipes
# (local/recipes/st_kd.sh): non-KD students C, the KD loss ablation, the Module/Task/All schemes,
# M*, BLEU of the speech and the text input, the report (the paper's Tables 3-5).
#   ./run.sh                                            # everything (CPU, about 100 minutes)
#   ./run.sh --stage 14 --stop-stage 14 --kd-systems kd_res --schemes "" --finetune-systems best
#   ./run.sh --teacher-updates 150 --student-updates 40 --scheme-stage-updates 15 \
#     --finetune-updates 20 --w2v2-updates 100 --mbart-updates 200   # a quick pass (20 minutes)
#   ./run.sh --student-init finetuned       # KD students and schemes from the trained teacher
# The update budgets below are what 2 CPU cores train in under two hours; the speech input needs
# far more (the stand-in wav2vec 2.0 is pre-trained for minutes): see RESULTS.md.
# Initialisation as the paper's (Sec. 2.2 and 5.1): the KD students, stage 1 of the schemes and
# C:pre-trained keep layers {0, 3} of each part of the tiny pre-trained wav2vec 2.0 and mBART
# (--student-init pretrained); --student-init finetuned takes them from the trained tiny teacher B.
# C from the teacher (tiny_student:teacher, Table 3's C:fine-tuned) is trained either way. Runs from
# the pre-trained models use --ddsd-warmup-updates (cross entropy before DDSD; at the default
# budgets longer than a student's run, as for C:pre-trained), those from trained weights (stages 2-3
# of the schemes, M*, students from the teacher) --student-ddsd-warmup-updates.
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=2
seed=0                  # the mini corpus
mini_data=../data       # the mini corpus (made by ../run.sh stage 0)
mini_exp=../exp
data=data
expdir=exp
spm_vocab_size=1000     # sentencepiece pieces shared by English and German
# systems (local/recipes/st_kd.sh): C as ARCH:INIT (INIT pretrained or teacher), the KD scheme
# files of Table 4, the training schemes of Table 2/5, the M* runs ("best": the KD student with the
# best dev BLEU[sph])
c_systems="tiny_student:teacher tiny_student:pretrained"
kd_systems="kd_all kd_res_dec kd_res_enc kd_feat kd_rel kd_res kd_res_enc_feat kd_res_enc_avgfeat
  kd_res_feat"
schemes="module task all"
finetune_systems="best module task all"
student_init=pretrained # KD students and schemes: pretrained (the tiny wav2vec 2.0 + mBART) or
                        # finetuned (the tiny teacher B)
# update budgets of the fairseq runs (2 idle CPU cores, one thread a run, 2 runs at once, 25 s of
# audio a batch: about 0.5 s an update for B, 0.35 s for C, 0.7 s for a KD student)
w2v2_updates=400        # tiny wav2vec 2.0 pre-training
mbart_updates=600       # tiny mBART pre-training
teacher_updates=2500    # B (about 8 epochs)
student_updates=500     # C, KD students, stage 3 of the schemes
scheme_stage_updates=150  # stages 1 and 2 of the schemes
finetune_updates=250    # M*
ddsd_warmup_updates=    # cross entropy before DDSD (the schemes' 5000); empty: teacher_updates/2
student_ddsd_warmup_updates=  # the same for runs from trained weights; empty: student_updates/5
max_tokens=400000       # audio samples per batch (25 s)
decode_opts="--beam 5 --max-len-b 60 --batch-size 16"
parallel=2              # runs at once (one thread each)
ngpu=0
force=false
results=RESULTS.md

help_message="Usage: $0 [options]: joint ST KD on the mini en->de set; results in \$results"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
mini_data=$(cd "$RECIPE_DIR" && readlink -f "$mini_data")
mini_exp=$(cd "$RECIPE_DIR" && readlink -f "$mini_exp")
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log" "$data"
echo "$RUN_COMMAND" >> "$expdir/commands.log"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # $parallel single-threaded runs share the cores

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: mini corpus (../run.sh stage 0)"
  (cd .. && ./run.sh --stage 0 --stop-stage 0 --nj "$nj" --seed "$seed" --data "$mini_data" \
    --expdir "$mini_exp" --force "$force")
fi

manifests=$mini_data/manifests
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: the en->de ST cuts with absolute audio paths"
  todo=()
  for split in train dev test; do
    if stage_needed "st_cuts_$split" "$manifests/mini_st_cuts_$split.jsonl.gz" \
        "$data/st_cuts_$split.jsonl.gz" "prefix=$RECIPE_DIR/.."; then
      todo+=("$split")
    fi
  done
  if [ ${#todo[@]} -gt 0 ]; then
    # ../run.sh's relative audio paths, made absolute (absolute ones stay as they are)
    python - "$manifests" "$data" "$RECIPE_DIR/.." "${todo[@]}" <<'EOF'
import sys
from pathlib import Path

from lhotse import CutSet

from speechkd.utils.atomic import save_manifest

manifests, data, prefix, *splits = sys.argv[1:]
for split in splits:
    cuts = CutSet.from_file(Path(manifests) / f"mini_st_cuts_{split}.jsonl.gz")
    cuts = cuts.with_recording_path_prefix(str(Path(prefix).resolve())).to_eager()
    save_manifest(cuts, Path(data) / f"st_cuts_{split}.jsonl.gz")
    print(f"{split}: {len(cuts)} cuts", file=sys.stderr)
EOF
    for split in "${todo[@]}"; do
      stage_done "st_cuts_$split" "$manifests/mini_st_cuts_$split.jsonl.gz" \
        "$data/st_cuts_$split.jsonl.gz" "prefix=$RECIPE_DIR/.."
    done
  fi
fi

# the variables of the shared method stages
train_cuts=$data/st_cuts_train.jsonl.gz
dev_cuts=$data/st_cuts_dev.jsonl.gz
test_sets="test=$data/st_cuts_test.jsonl.gz"
src_lang=en
tgt_lang=de
text="en=$mini_data/text/mini_raw_en.txt de=$mini_data/text/mini_raw_de.txt"
export_opts="--spm-vocab-size $spm_vocab_size"
method_exp=$expdir/st_kd
teacher_arch=tiny_teacher
student_arch=tiny_student
: "${ddsd_warmup_updates:=$((teacher_updates / 2))}"
: "${student_ddsd_warmup_updates:=$((student_updates / 5))}"
warmup=$((teacher_updates / 10))
[ "$warmup" -ge 1 ] || warmup=1
train_opts="--max-tokens $max_tokens --max-tokens-valid $((2 * max_tokens)) --update-freq 1
  --warmup-updates $warmup --log-interval 10"
teacher_opts="--max-update $teacher_updates"
student_opts="--max-update $student_updates"
scheme_stage_opts="--max-update $scheme_stage_updates"
finetune_opts="--max-update $finetune_updates"
# the tiny sets hold fewer clips and text blocks than fairseq's default batch-size multiple (8)
w2v2_pretrain_opts="optimization.max_update=$w2v2_updates dataset.required_batch_size_multiple=1
  checkpoint.save_interval_updates=$w2v2_updates dataset.validate_interval_updates=$w2v2_updates"
mbart_pretrain_opts="--max-update $mbart_updates --total-num-update $mbart_updates
  --required-batch-size-multiple 1 --save-interval-updates $mbart_updates
  --validate-interval-updates $mbart_updates"
# Table 1 of the paper's architectures (meta device: no weights) with mbart.cc25's vocabulary; the
# trained tiny systems' own counts come with their decodes (model.json)
param_models=teacher_12_12_12,student_6_6_6,student_8_8_2
param_vocab=250027
report_title="Joint ST KD, mini en->de (B $teacher_updates updates, students $student_updates)"

. ./local/recipes/st_kd.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "Joint speech/text ST KD, mini recipe (seed=$seed)" \
    --commands-file "$expdir/commands.log" --section "$method_exp/report.md"
fi
log "done"
