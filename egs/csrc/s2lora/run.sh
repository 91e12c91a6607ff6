#!/usr/bin/env bash
# S2-LoRA (Liu et al., "Sparsely shared LoRA on Whisper for child speech recognition", ICASSP
# 2024): whisper-medium adapted to Chinese child read speech (CSRC-2021 zh-C1) with every
# parameter-composition PEFT method and full fine-tuning; tested in domain (zh-C1) and out of
# domain (child conversation zh-C2, adult AISHELL-1 zh-A1, Common Voice 11.0 zh-HK and en).
#   ./run.sh --csrc-dir /data/csrc2021 --c1-test-set eval/C1 --c2-test-set eval/C2 \
#     --aishell-dir /data/aishell --cv-dir /data/cv-corpus-11.0-2022-09-21   # everything, 1K
#   ./run.sh ... --train-size 10k --stage 1     # the 10K subset (data of stage 0 reused)
#   ./run.sh ... --train-size all --stage 1     # the whole zh-C1 (~30K utterances)
#   ./run.sh --help
# Data (stages 0-3):
#   0  manifests: the CSRC sets $train_set, $c1_test_set and $c2_test_set (local/prepare_csrc.sh),
#      AISHELL-1 (local/prepare_aishell.sh) and the test split of the CV-11 locales $cv_locales
#      (local/prepare_commonvoice.sh)
#   1  the adaptation set: $train_size random utterances of $train_set (1k | 10k | 30k | all |
#      a count; checked disjoint from the zh-C1 test set); the test sets: $test_size random
#      utterances of each of zh-C1, zh-C2, AISHELL-1 test and the CV-11 test of each locale;
#      all resampled to 16 kHz
#   2  Whisper log-mel features (lilcom) of every set, $nj jobs per set
#      (--precompute-features false: none, training and decoding compute them from the audio)
#   3  the model: a local save_pretrained directory is used as it is, a hub name is downloaded
#      (config, tokenizer, safetensors) into $data/models/; path.sh keeps the hub offline: run this
#      stage once with HF_HUB_OFFLINE=0 in the environment
# Methods (stages 10-15, local/recipes/s2lora.sh, shared by the S2-LoRA recipes): zero-shot,
#   Full-FT, GLoRA, AdaLoRA, LoRA, BitFit, IA3, alpha-LoRA, S2-LoRA (conf/s2lora/*.yaml: batch
#   2 x 8 accumulations, 3 epochs, LR 1e-3 PEFT / 1e-4 full, greedy decoding), CER for Chinese and
#   WER for English, rank heatmap (Fig. 3), parameter table (Table 2), report in
#   $expdir/s2lora_$train_size/report.md; stage 100: $results (every train size run so far).
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=4                  # parallel jobs of the data stages
csrc_dir=             # CSRC-2021: one directory per set, <csrc_dir>/<set>/**/*.wav + transcripts
train_set=C1          # the CSRC set adapted to (child read speech: zh-C1)
c1_test_set=          # CSRC set directory of the child read evaluation data (zh-C1 test)
c2_test_set=C2        # ... of the child conversational evaluation data (zh-C2; C2 never trains)
aishell_dir=          # AISHELL-1: <aishell_dir>/data_aishell/{wav,transcript}
cv_dir=               # Common Voice 11.0: <cv_dir>[/cv-corpus-11.0-2022-09-21]/<locale>/
cv_locales="zh-HK en" # CV-11 test sets (cross-lingual evaluation)
train_size=1k         # adaptation utterances: 1k | 10k | 30k (paper) | all | any count
test_size=1000        # random utterances of each test set
seed=0                # the random draws of stage 1
precompute_features=true
num_mel_bins=80       # 80 for whisper-medium (128 for large-v3)
model=openai/whisper-medium  # the paper's model (hub name or local directory)
data=data
expdir=exp
# method stages (local/recipes/s2lora.sh): the paper's hyper-parameters are in
# $s2_conf/<system>.yaml; empty values take the defaults of the method stages
systems=              # default: full glora adalora lora bitfit ia3 alpha_lora s2lora
s2_conf=              # default: $SPEECHKD_ROOT/conf/s2lora
train_opts=           # extra whisper_train flags for every system, e.g. "--seed 2"
decode_opts=          # extra whisper_decode flags (default: --num-beams 1, greedy)
decode_nj=            # test sets decoded at once (default 1)
rank_adalora=         # AdaLoRA system of the rank heatmap (default adalora; the paper's Fig. 3:
                      # --systems "<the default ones> adalora_fig3" --rank-adalora adalora_fig3)
param_table_size=     # Whisper size of the parameter table (default: medium)
report_title=
force=false
results=RESULTS.md    # the report of stage 100 (every train size run so far)

help_message="Usage: $0 --csrc-dir DIR --c1-test-set SET --aishell-dir DIR --cv-dir DIR [options]"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

if ! [[ $train_size =~ ^([0-9]+k?|all)$ ]]; then
  log "--train-size must be a count such as 1k, 10k, 30k or 1000, or all, not '$train_size'"
  exit 1
fi
if ! [[ $test_size =~ ^([0-9]+k?|all)$ ]]; then
  log "--test-size must be a count such as 1000 or all, not '$test_size'"; exit 1
fi
check_csrc_sets() {  # the CSRC set options that stages 0 and 1 need
  if [ -z "$c1_test_set" ]; then
    log "give --c1-test-set: the CSRC set directory of the child read (zh-C1) evaluation data"
    exit 1
  fi
  if [ "$c1_test_set" = "$train_set" ] || [ "$c2_test_set" = "$train_set" ]; then
    log "the test sets ($c1_test_set, $c2_test_set) must not be the training set $train_set"
    exit 1
  fi
}
read -ra locale_list <<< "$cv_locales"

csrc_split() { echo "$1" | tr 'A-Z/' 'a-z_'; }  # CSRC set directory -> manifest split name
locale_set() { echo "$1" | tr 'A-Z-' 'a-z_'; }   # CV locale -> test set name (zh-HK -> zh_hk)
metric_of() {  # CER for languages written without spaces (Chinese), WER otherwise
  case ${1%%[-_]*} in zh|ja|th|yue|lo|my) echo cer ;; *) echo wer ;; esac
}

manifests=$data/manifests
train_split=$(csrc_split "$train_set")
c1_split=$(csrc_split "$c1_test_set")
c2_split=$(csrc_split "$c2_test_set")
eval_subsets=$data/subsets/eval
train_subsets=$data/subsets/csrc_${train_split}_${train_size}
if [ "$precompute_features" = true ]; then
  eval_dir=$data/fbank/eval
  train_dir=$data/fbank/csrc_${train_split}_${train_size}
else
  eval_dir=$eval_subsets
  train_dir=$train_subsets
fi

cv_manifests() {  # the CV-11 test manifests of every locale
  local l
  for l in "${locale_list[@]}"; do
    printf '%s ' "$manifests/commonvoice_cuts_${l}_test.jsonl.gz"
  done
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: manifests of CSRC-2021 ($train_set $c1_test_set $c2_test_set), AISHELL-1, CV-11"
  check_csrc_sets
  [ -n "$csrc_dir" ] && [ -n "$aishell_dir" ] && [ -n "$cv_dir" ] \
    || { log "give --csrc-dir, --aishell-dir and --cv-dir"; exit 1; }
  sets="$train_set,$c1_test_set,$c2_test_set"
  outputs=
  for split in "$train_split" "$c1_split" "$c2_split"; do
    outputs+="$manifests/csrc_cuts_$split.jsonl.gz "
  done
  params="sets=$sets"
  inputs="$csrc_dir/$train_set $csrc_dir/$c1_test_set $csrc_dir/$c2_test_set"
  if stage_needed prepare_csrc "$inputs" "$outputs" "$params"; then
    # the evaluation sets' style and age group are stated (their names need not be C1 / C2)
    local/prepare_csrc.sh --corpus-dir "$csrc_dir" --output-dir "$manifests" --sets "$sets" \
      --set-info "$c1_test_set:read:child,$c2_test_set:conversational:child" --nj "$nj" \
      2>&1 | tee "$expdir/log/prepare_csrc.log"
    stage_done prepare_csrc "$inputs" "$outputs" "$params"
  fi
  out=$manifests/aishell_cuts_test.jsonl.gz
  if stage_needed prepare_aishell "$aishell_dir" "$out" ""; then
    local/prepare_aishell.sh --corpus-dir "$aishell_dir" --output-dir "$manifests" \
      2>&1 | tee "$expdir/log/prepare_aishell.log"
    stage_done prepare_aishell "$aishell_dir" "$out" ""
  fi
  cv_release=$cv_dir
  [ -d "$cv_dir/cv-corpus-11.0-2022-09-21" ] && cv_release=$cv_dir/cv-corpus-11.0-2022-09-21
  tsvs=
  for l in "${locale_list[@]}"; do tsvs+="$cv_release/$l/test.tsv "; done
  if stage_needed prepare_commonvoice "$tsvs" "$(cv_manifests)" "locales=$cv_locales"; then
    # only the test split is used; the preparer also writes train/dev (one clip each here)
    local/prepare_commonvoice.sh --corpus-dir "$cv_release" --output-dir "$manifests" \
      --languages "$cv_locales" --train-utts 1 --dev-utts 1 --nj "$nj" \
      2>&1 | tee "$expdir/log/prepare_commonvoice.log"
    stage_done prepare_commonvoice "$tsvs" "$(cv_manifests)" "locales=$cv_locales"
  fi
fi

subsample() {  # subsample <log name> <subsample_cuts options...>
  local name=$1; shift
  python -m speechkd.bin.subsample_cuts --by random --seed "$seed" --resample 16000 "$@" \
    --log-file "$expdir/log/subsample_$name.log"
}

# test sets: "<name> <corpus> <input manifest>"
test_specs=("zh_c1 csrc $manifests/csrc_cuts_$c1_split.jsonl.gz"
  "zh_c2 csrc $manifests/csrc_cuts_$c2_split.jsonl.gz"
  "zh_a1 aishell $manifests/aishell_cuts_test.jsonl.gz")
for l in "${locale_list[@]}"; do
  test_specs+=("$(locale_set "$l") commonvoice $manifests/commonvoice_cuts_${l}_test.jsonl.gz")
done

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: $train_size random utterances of $train_set; $test_size of each test set"
  check_csrc_sets
  train=$train_subsets/csrc_cuts_train.jsonl.gz
  c1_test=$manifests/csrc_cuts_$c1_split.jsonl.gz
  inputs="$manifests/csrc_cuts_$train_split.jsonl.gz $c1_test"
  params="train_size=$train_size seed=$seed"
  if stage_needed "subset_train_${train_split}_$train_size" "$inputs" "$train" "$params"; then
    subsample "train_$train_size" --cuts "$manifests/csrc_cuts_$train_split.jsonl.gz" \
      --out "$train" --per-language "$train_size" --disjoint-from "$c1_test"
    stage_done "subset_train_${train_split}_$train_size" "$inputs" "$train" "$params"
  fi
  for spec in "${test_specs[@]}"; do
    read -r name corpus cuts <<< "$spec"
    out=$eval_subsets/${corpus}_cuts_$name.jsonl.gz
    if stage_needed "subset_test_$name" "$cuts" "$out" "test_size=$test_size seed=$seed"; then
      subsample "test_$name" --cuts "$cuts" --out "$out" --per-language "$test_size"
      stage_done "subset_test_$name" "$cuts" "$out" "test_size=$test_size seed=$seed"
    fi
  done
fi

features() {  # features <name> <subset dir> <output dir>: Whisper log-mel of every set of a dir
  local name=$1 src=$2 dst=$3
  local params="nj-independent whisper num_mel_bins=$num_mel_bins"
  if stage_needed "features_$name" "$src" "$dst" "$params"; then
    $train_cmd JOB=1:$nj "$dst/log/features.JOB.log" \
      python -m speechkd.bin.compute_features --from-dir "$src" --pattern '*_cuts_*.jsonl.gz' \
        --output-dir "$dst" --feature-type whisper --num-mel-bins "$num_mel_bins" --shard JOB/$nj
    python -m speechkd.bin.compute_features --from-dir "$src" --pattern '*_cuts_*.jsonl.gz' \
      --output-dir "$dst" --merge "$nj" --log-file "$dst/log/merge.log"
    stage_done "features_$name" "$src" "$dst" "$params"
  fi
}

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ "$precompute_features" = true ]; then
    log "Stage 2: Whisper log-mel features ($num_mel_bins bins) with $nj jobs per set"
    features "csrc_${train_split}_$train_size" "$train_subsets" "$train_dir"
    features eval "$eval_subsets" "$eval_dir"
  else
    log "Stage 2: skipped (--precompute-features false: features come from the audio)"
  fi
fi

local_model() {  # local_model <hub name | directory>: the directory stage 3 fills, or the directory
  if [ -d "$1" ]; then echo "$1"; else echo "$data/models/${1//\//__}"; fi
}

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: model $model"
  if [ -d "$model" ]; then
    log "$model: a local model directory, used as it is"
  else
    dir=$(local_model "$model")
    if stage_needed "model_${model//\//__}" "" "$dir" "model=$model"; then
      python -m speechkd.bin.fetch_whisper --model "$model" --out-dir "$dir" \
        2>&1 | tee "$expdir/log/download_${model//\//__}.log" || {
        log "could not download $model (HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-}; to fetch it run" \
          "HF_HUB_OFFLINE=0 $0 --stage 3 --stop-stage 3, or pass a local directory)"
        exit 1
      }
      stage_done "model_${model//\//__}" "" "$dir" "model=$model"
    fi
  fi
fi

# The method stages (10-15) read these.
model_dir=$(local_model "$model")
tokenizer=$model_dir
train_cuts=$train_dir/csrc_cuts_train.jsonl.gz
in_domain_sets="zh_c1=$eval_dir/csrc_cuts_zh_c1.jsonl.gz,cer"
out_of_domain_sets="zh_c2=$eval_dir/csrc_cuts_zh_c2.jsonl.gz,cer"
out_of_domain_sets+=" zh_a1=$eval_dir/aishell_cuts_zh_a1.jsonl.gz,cer"
for l in "${locale_list[@]}"; do
  name=$(locale_set "$l")
  out_of_domain_sets+=" $name=$eval_dir/commonvoice_cuts_$name.jsonl.gz,$(metric_of "$l")"
done
method_exp=$expdir/s2lora_${train_size}
: "${report_title:=S2-LoRA: ${model##*/} adapted on CSRC-2021 $train_set, $train_size utterances}"

if [ $stop_stage -ge 10 ]; then
  template=local/recipes/s2lora.sh
  [ -f "$template" ] || { log "$template not found: the method stages are not available"; exit 1; }
  # shellcheck disable=SC1090
  . "$template"
fi

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  for report in "$expdir"/s2lora_*/report.md; do
    [ -f "$report" ] && sections+=(--section "$report")
  done
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "S2-LoRA on CSRC-2021, AISHELL-1 and Common Voice 11.0" \
    --commands-file "$expdir/commands.log" "${sections[@]}"
fi
log "done"
