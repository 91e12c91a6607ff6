#!/usr/bin/env bash
# DistillW2V2 on the mini corpus: a tiny wav2vec 2.0 teacher pre-trained on the mini English audio
# and fine-tuned with LF-MMI on phones (the stand-in for wav2vec2-large LV-60k), then the two-step
# distillation T -> SN -> SS, the single-step baseline and the M1-M4 ablation, decoding and the
# report. The method stages are the ones of the real recipes (local/recipes/distill_w2v2.sh).
#   ./run.sh                                # everything
#   ./run.sh --stage 14 --stop-stage 14     # only step 1 (every setting in --settings)
#   ./run.sh --settings "M4" --stage 14     # a single setting
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=2
seed=0
mini_data=../data       # the mini corpus (made by ../run.sh stages 0-3)
mini_exp=../exp
language=en
test_names="test test_ood"  # mini_asr test sets scored (test_ood: other voices, longer utterances)
data=data
expdir=exp
settings="M1 M2 M3 M4"  # Table 3 ablation of step 1
main_setting=M4         # the SN that step 2 starts from (the paper's setting)
history=600             # SS: frames of history (the paper's 600)
chunk=48                # SS: frames per chunk (the paper's 48)
student_arch=tiny_student
den_order=4             # phone LM order of the denominator graph (built from the raw text),
                        # as the real recipes (RESULTS.md until regenerated: --den-order 3)
# No silence in the mini denominator, deliberately (the real recipes insert SIL at random, 0.2
# between words and 0.8 at sentence edges): a SIL unit changes the phone table and every model's
# outputs, and the mini's committed results were made without one. --den-silence SIL gives the
# real recipes' setting.
den_silence=none        # SIL: the real recipes' random silence
lm_order=4              # word LM of the lexicon decoding
# update budgets for 2 CPU cores (hydra overrides of conf/distill_w2v2/*_tiny.yaml)
pretrain_opts="optimization.max_update=250"
finetune_opts="optimization.max_update=300"
distill_opts="optimization.max_update=300"
step2_opts="optimization.lr=[0.0001]"
ngpu=0
decode_opts=""
decoders="best_path lm streaming"
rtf_models=table
rtf_opts="--streaming"
force=false
results=RESULTS.md

help_message="Usage: $0 [options]: DistillW2V2 on the mini corpus; results in \$results"
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

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: mini corpus and phone lexicon (../run.sh stages 0-3)"
  (cd .. && ./run.sh --stage 0 --stop-stage 3 --nj "$nj" --seed "$seed" --data "$mini_data" \
    --expdir "$mini_exp" --force "$force")
fi

# the variables of the shared method stages
manifests=$mini_data/manifests
pool_cuts="$manifests/mini_asr_cuts_train.jsonl.gz $manifests/mini_st_cuts_train.jsonl.gz"
train_cuts=$manifests/mini_asr_cuts_train.jsonl.gz
dev_cuts=$manifests/mini_asr_cuts_dev.jsonl.gz
test_sets=""
for name in $test_names; do test_sets="$test_sets $name=$manifests/mini_asr_cuts_$name.jsonl.gz"; done
# a G2P (espeak-ng) lexicon of every word of the sets and of the raw text, built in stage 10
lexicon=$data/lang_phone_${language}/lexicon.txt
# the denominator's phone LM: the mini corpus's raw text (every line: far below the sample cap)
den_text=$mini_data/text/mini_raw_${language}.txt
den_seed=$seed
den_graph=$data/lang_den_${language}_o$den_order/den.fst.txt
lm_text=$mini_data/text/mini_raw_${language}.txt
method_exp=$expdir/distill_w2v2
path_prefix=$(readlink -f "$RECIPE_DIR/..")  # ../run.sh's relative audio paths, made absolute

. ./local/recipes/distill_w2v2.sh

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "DistillW2V2, mini recipe (seed=$seed)" --commands-file "$expdir/commands.log" \
    --section "$method_exp/report.md"
fi
log "done"
