#!/usr/bin/env bash
# DistilWhisper (Ferraz et al., ICASSP 2024) on Common Voice 13.0, FLEURS out of domain:
# whisper-small with language-specific CLSR experts, distilled from whisper-large-v2.
#   ./run.sh --cv-dir /data/cv-corpus-13.0-2023-03-09 --fleurs-dir /data/fleurs   # everything
#   ./run.sh --cv-dir ... --fleurs-dir ... --stage 0 --stop-stage 2             # data stages
#   ./run.sh --train-size 3k --languages "ca th ta" --stage 1                   # the size ablation
#   ./run.sh --help
# Data (stages 0-2):
#   0  CV-13 manifests of each language (train: the $train_pool most up-voted clips, dev: $dev_pool,
#      test: all) and FLEURS manifests (local/prepare_{commonvoice,fleurs}.sh)
#   1  the train/dev subsets: the $train_size and $dev_size most up-voted clips per language
#      (ties: fewer down-votes, then clip id), dev checked disjoint from train; the whole CV-13
#      test (in domain) and FLEURS test (out of domain); all resampled to 16 kHz
#   2  Whisper log-mel features (lilcom) of every subset, $nj jobs per set
#      (--precompute-features false: none, the training and decoding compute them from the audio)
#   3  the student and teacher models: a local save_pretrained directory is used as it is, a hub
#      name is downloaded (config, tokenizer, safetensors) into $data/models/; path.sh keeps the
#      hub offline: run this stage once with HF_HUB_OFFLINE=0 in the environment
# Methods (stages 10-19, local/recipes/distilwhisper.sh, shared by the DistilWhisper recipes):
#   zero-shot student and teacher, FT, LoRA-FT, CLSR-FT, teacher cache, DistilWhisper, KL, decoding
#   of every set, report in $expdir/distilwhisper_$train_size/report.md; stage 100: $results.
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=4                  # parallel jobs of the data stages
languages="ca cs gl hu pl ta th uk"
cv_dir=               # CV 13.0: <cv_dir>[/cv-corpus-13.0-2023-03-09]/<locale>/{*.tsv,clips/}
fleurs_dir=           # FLEURS: <fleurs_dir>/<code>/{train,dev,test}.tsv + audio/<split>/*.wav
train_size=10k        # train utterances per language: 3k | 10k | 28k (paper) or any count
dev_size=1000         # dev utterances per language
train_pool=28000      # stage 0 keeps this many most up-voted train clips (all: every one)
dev_pool=all          # ... and dev clips; the stage-1 subsets are drawn from these pools
vote_seed=            # empty: ties broken by clip id; a number: by a seeded hash of it
precompute_features=true
num_mel_bins=80       # 80 for whisper-small / large-v2 (128 for large-v3)
student=openai/whisper-small
teacher=openai/whisper-large-v2
data=data
expdir=exp
# method stages (local/recipes/distilwhisper.sh): hyper-parameters of the paper are in
# $dw_conf/<system>.yaml; empty values take the defaults of the method stages
systems=              # default: ft lora_ft clsr_ft distilwhisper distilwhisper_kl
dw_conf=              # default: $SPEECHKD_ROOT/conf/distilwhisper
train_opts=           # extra whisper_train flags for every system, e.g. "--seed 2 --amp"
decode_opts=          # extra whisper_decode flags, e.g. "--num-beams 5"
top_k=                # teacher cache: top-k probabilities per position (default 64)
cache_opts=           # extra cache_teacher flags
measure_online_kd=true
gate_systems=         # more "LABEL=DECODE_DIR" for the gate plot (other train sizes: automatic)
report_title=
force=false
results=RESULTS.md    # the report of stage 100 (every train size run so far)

help_message="Usage: $0 --cv-dir DIR --fleurs-dir DIR [options]; data in \$data, runs in \$expdir"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

if ! [[ $train_size =~ ^[0-9]+k?$ ]]; then
  log "--train-size must be a count such as 3k, 10k, 28k or 3000, not '$train_size'"; exit 1
fi
if ! [[ $dev_size =~ ^[0-9]+k?$ ]]; then
  log "--dev-size must be a count such as 1000 or 1k, not '$dev_size'"; exit 1
fi
if ! [[ $train_pool =~ ^([0-9]+|all)$ && $dev_pool =~ ^([0-9]+|all)$ ]]; then
  log "--train-pool and --dev-pool take a count or all, not '$train_pool' / '$dev_pool'"; exit 1
fi
count() { case $1 in *k) echo $(( ${1%k} * 1000 )) ;; *) echo "$1" ;; esac; }
for pool in "train $train_pool $train_size" "dev $dev_pool $dev_size"; do
  read -r part pool_size size <<< "$pool"
  if [ "$pool_size" != all ] && [ "$(count "$size")" -gt "$pool_size" ]; then
    log "--${part}-size $size exceeds --${part}-pool $pool_size (the clips prepared in stage 0)"
    exit 1
  fi
done
read -ra language_list <<< "$languages"

manifests=$data/manifests
eval_subsets=$data/subsets/eval
train_subsets=$data/subsets/cv13_${train_size}
if [ "$precompute_features" = true ]; then
  eval_dir=$data/fbank/eval
  train_dir=$data/fbank/cv13_${train_size}
else
  eval_dir=$eval_subsets
  train_dir=$train_subsets
fi

cv_manifests() {  # cv_manifests <part>: the per-language CV cut manifests of one part
  local l
  for l in "${language_list[@]}"; do
    printf '%s ' "$manifests/commonvoice_cuts_${l}_$1.jsonl.gz"
  done
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: CV-13 and FLEURS manifests of $languages"
  [ -n "$cv_dir" ] && [ -n "$fleurs_dir" ] || { log "give --cv-dir and --fleurs-dir"; exit 1; }
  cv_release=$cv_dir
  [ -d "$cv_dir/cv-corpus-13.0-2023-03-09" ] && cv_release=$cv_dir/cv-corpus-13.0-2023-03-09
  tsvs=
  for l in "${language_list[@]}"; do
    for part in train dev test; do tsvs+="$cv_release/$l/$part.tsv "; done
  done
  outputs="$(cv_manifests train)$(cv_manifests dev)$(cv_manifests test)"
  params="languages=$languages train_pool=$train_pool dev_pool=$dev_pool"
  if stage_needed prepare_commonvoice "$tsvs" "$outputs" "$params"; then
    local/prepare_commonvoice.sh --corpus-dir "$cv_dir" --output-dir "$manifests" \
      --languages "$languages" --train-utts "$train_pool" --dev-utts "$dev_pool" --nj "$nj" \
      2>&1 | tee "$expdir/log/prepare_commonvoice.log"
    stage_done prepare_commonvoice "$tsvs" "$outputs" "$params"
  fi
  outputs=
  for l in "${language_list[@]}"; do outputs+="$manifests/fleurs_cuts_${l}_test.jsonl.gz "; done
  if stage_needed prepare_fleurs "$fleurs_dir" "$outputs" "languages=$languages"; then
    local/prepare_fleurs.sh --corpus-dir "$fleurs_dir" --output-dir "$manifests" \
      --languages "$languages" --nj "$nj" 2>&1 | tee "$expdir/log/prepare_fleurs.log"
    stage_done prepare_fleurs "$fleurs_dir" "$outputs" "languages=$languages"
  fi
fi

subsample() {  # subsample <log name> <subsample_cuts options...>
  local name=$1; shift
  python -m speechkd.bin.subsample_cuts --languages "${language_list[@]}" --resample 16000 "$@" \
    --log-file "$expdir/log/subsample_$name.log"
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: CV-13 train ($train_size) and dev ($dev_size) per language by up-votes; test sets"
  train=$train_subsets/commonvoice_cuts_train.jsonl.gz
  dev=$train_subsets/commonvoice_cuts_dev.jsonl.gz
  inputs="$(cv_manifests train)$(cv_manifests dev)$(cv_manifests test)"
  params="languages=$languages train_size=$train_size dev_size=$dev_size vote_seed=$vote_seed"
  if stage_needed "subsets_cv13_$train_size" "$inputs" "$train $dev" "$params"; then
    seed_opts=()
    [ -n "$vote_seed" ] && seed_opts=(--seed "$vote_seed")
    # no clip in two of train, dev and test (the CV splits are disjoint; a mixed-up corpus is not)
    # shellcheck disable=SC2046
    subsample "train_$train_size" --cuts $(cv_manifests train) --out "$train" \
      --per-language "$train_size" --by up_votes "${seed_opts[@]}" \
      --disjoint-from $(cv_manifests test)
    # shellcheck disable=SC2046
    subsample "dev_$dev_size" --cuts $(cv_manifests dev) --out "$dev" \
      --per-language "$dev_size" --by up_votes "${seed_opts[@]}" \
      --disjoint-from "$train" $(cv_manifests test)
    stage_done "subsets_cv13_$train_size" "$inputs" "$train $dev" "$params"
  fi
  test_cuts=$eval_subsets/commonvoice_cuts_test.jsonl.gz
  fleurs_cuts=$eval_subsets/fleurs_cuts_test.jsonl.gz
  inputs="$(cv_manifests test)"
  for l in "${language_list[@]}"; do inputs+="$manifests/fleurs_cuts_${l}_test.jsonl.gz "; done
  if stage_needed subsets_eval "$inputs" "$test_cuts $fleurs_cuts" "languages=$languages"; then
    # shellcheck disable=SC2046
    subsample test --cuts $(cv_manifests test) --out "$test_cuts" --per-language all --by random
    fleurs=()
    for l in "${language_list[@]}"; do fleurs+=("$manifests/fleurs_cuts_${l}_test.jsonl.gz"); done
    subsample fleurs_test --cuts "${fleurs[@]}" --out "$fleurs_cuts" --per-language all --by random
    stage_done subsets_eval "$inputs" "$test_cuts $fleurs_cuts" "languages=$languages"
  fi
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
    features "cv13_$train_size" "$train_subsets" "$train_dir"
    features eval "$eval_subsets" "$eval_dir"
  else
    log "Stage 2: skipped (--precompute-features false: features come from the audio)"
  fi
fi

model_dir() {  # model_dir <hub name | directory>: the directory stage 3 fills (or the directory)
  if [ -d "$1" ]; then echo "$1"; else echo "$data/models/${1//\//__}"; fi
}

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: models: student $student, teacher $teacher"
  for model in "$student" "$teacher"; do
    if [ -d "$model" ]; then
      log "$model: a local model directory, used as it is"
      continue
    fi
    dir=$(model_dir "$model")
    if stage_needed "model_${model//\//__}" "" "$dir" "model=$model"; then
      # model + tokenizer as safetensors, the vocabulary checked (the tokenizer is built offline
      # from openai-whisper's assets when the hub copy has none)
      python -m speechkd.bin.fetch_whisper --model "$model" --out-dir "$dir" \
        2>&1 | tee "$expdir/log/download_${model//\//__}.log" || {
        log "could not download $model (HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-}; to fetch it run" \
          "HF_HUB_OFFLINE=0 $0 --stage 3 --stop-stage 3, or pass a local directory)"
        exit 1
      }
      stage_done "model_${model//\//__}" "" "$dir" "model=$model"
    fi
  done
fi

# The method stages (10-19) read these.
student_dir=$(model_dir "$student")
teacher_dir=$(model_dir "$teacher")
tokenizer=$student_dir  # whisper-small and whisper-large-v2 share the multilingual tokenizer
train_cuts=$train_dir/commonvoice_cuts_train.jsonl.gz
dev_cuts=$train_dir/commonvoice_cuts_dev.jsonl.gz
in_domain_sets="test=$eval_dir/commonvoice_cuts_test.jsonl.gz"
out_of_domain_sets="fleurs=$eval_dir/fleurs_cuts_test.jsonl.gz"
method_exp=$expdir/distilwhisper_${train_size}
report_title=${report_title:-"DistilWhisper: CV-13 ($train_size utterances a language), FLEURS"}
# gate usage of the other training sizes already run, for the plot (the paper's Fig. 2)
for other in "$expdir"/distilwhisper_*/distilwhisper/decode; do
  [ -d "$other" ] && [ "$other" != "$method_exp/distilwhisper/decode" ] || continue
  size=${other#"$expdir"/distilwhisper_}; size=${size%%/*}
  gate_systems="$gate_systems DistilWhisper-$size=$other"
done

if [ $stop_stage -ge 10 ]; then
  template=local/recipes/distilwhisper.sh
  [ -f "$template" ] || { log "$template not found: the method stages are not available"; exit 1; }
  # shellcheck disable=SC1090
  . "$template"
fi

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  for report in "$expdir"/distilwhisper_*/report.md; do
    [ -f "$report" ] && sections+=(--section "$report")
  done
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "DistilWhisper on Common Voice 13.0 and FLEURS" \
    --commands-file "$expdir/commands.log" "${sections[@]}"
fi
log "done"
