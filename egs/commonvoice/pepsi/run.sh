#!/usr/bin/env bash
# PEPSI (Kim et al., 2024) on Common Voice 13.0: whisper-large-v2 adapted to each of five
# low-resource languages and English with decoder LoRA on a 50% lottery ticket, against zero-shot,
# FFT, LoRA, LTH and LTH-FT (Table 3); the Korean tickets transferred to ClovaCall (Table 4);
# tickets pruned on Korean versus Malayalam decoded on Korean (Table 1); Figs. 3b and 4.
#   ./run.sh --cv-dir /data/cv-corpus-13.0-2023-03-09 --clovacall-dir /data/ClovaCall   # everything
#   ./run.sh --cv-dir ... --clovacall-dir ... --stage 0 --stop-stage 2              # data stages
#   HF_HUB_OFFLINE=0 ./run.sh --stage 3 --stop-stage 3                              # the model
#   ./run.sh --languages "ko en" --fig4-languages "" --subnet-pairs "" --stage 10   # a subset
#   ./run.sh --help
# Data (stages 0-3):
#   0  CV-13 manifests of each locale (every train, dev and test clip) and ClovaCall manifests
#      (local/prepare_{commonvoice,clovacall}.sh); without --clovacall-dir no transfer experiment
#   1  per language: train ($train_size most up-voted clips, default all), dev ($dev_size most
#      up-voted, checked disjoint from train) and the whole test set; ClovaCall train and test;
#      all resampled to 16 kHz
#   2  Whisper log-mel features (lilcom) of every subset, $nj jobs per set
#      (--precompute-features false: none, the training and decoding compute them from the audio)
#   3  the foundation model: a local save_pretrained directory is used as it is, a hub name is
#      downloaded (config, tokenizer, safetensors) into $data/models/; path.sh keeps the hub
#      offline: run this stage once with HF_HUB_OFFLINE=0 in the environment
# Methods (stages 10-19, local/recipes/pepsi.sh, shared by the PEPSI recipes): zero-shot, FFT,
#   LoRA, IMP (50%; Korean to 80% for Fig. 4), LTH, LTH-FT, PEPSI per language, the subnetwork
#   check, the ClovaCall transfer, figures and the report $expdir/pepsi/report.md;
#   stage 100: $results.
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=4                  # parallel jobs of the data stages
languages="ko ml ja sw zh-CN en"  # CV locales (the method stages use their ISO 639-1 codes)
cv_dir=               # CV 13.0: <cv_dir>[/cv-corpus-13.0-2023-03-09]/<locale>/{*.tsv,clips/}
clovacall_dir=        # ClovaCall: {train,test}_ClovaCall.json + clean/ (empty: no transfer)
clovacall_variant=clean  # clean | raw audio
train_size=all        # train utterances per language, most up-voted first (the paper: all)
dev_size=1000         # dev utterances per language (validation loss)
vote_seed=            # empty: ties broken by clip id; a number: by a seeded hash of it
precompute_features=true
num_mel_bins=80       # 80 for whisper-large-v2 (128 for large-v3)
base=openai/whisper-large-v2  # the foundation model: hub name or local directory
data=data
expdir=exp
# method stages (local/recipes/pepsi.sh); hyper-parameters of the paper are in
# $pepsi_conf/<system>.yaml and imp.yaml; empty values take the defaults of the method stages
systems=              # default: ft lora lth lth_ft pepsi (zero-shot always)
pepsi_conf=           # default: $SPEECHKD_ROOT/conf/pepsi
target_sparsity=0.5   # pruned share of ALL Whisper parameters (PEPSI: 0.77B of 1.54B alive)
fig4_languages=ko     # IMP to 80% with every 10% decoded (PEPSI Fig. 4); ISO codes
# Fig. 4 stops at 80%: at most 86.2% of all whisper-large-v2 parameters are prunable (biases,
# norms, fixed positions and the LoRA-carrying decoder q/v stay), so the paper's 90% is out of reach
fig4_milestones="0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8"
subnet_pairs=ko:ml    # Table 1: tickets pruned on ko and on ml, both decoded on ko
subnet_sparsities="0.19 0.3439"
cer_languages="zh ja ko th"  # decoded with CER (the report gives CER and WER for every language)
transfer_language=ko  # the tickets adapted to ClovaCall are pruned on this language
train_opts=           # extra whisper_train flags for every system, e.g. "--amp --accum-grad 2"
full_opts=            # extra whisper_train flags of FFT and LTH-FT
imp_opts=             # extra pepsi_prune flags, e.g. "--amp"
decode_opts=          # extra whisper_decode flags, e.g. "--num-beams 5"
lang_jobs=1           # languages trained at once (each job takes one GPU)
report_title=
force=false
results=RESULTS.md

help_message="Usage: $0 --cv-dir DIR [--clovacall-dir DIR] [options]; runs in \$expdir"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

if ! [[ $train_size =~ ^([0-9]+k?|all)$ && $dev_size =~ ^([0-9]+k?|all)$ ]]; then
  log "--train-size and --dev-size take a count (1000, 10k) or all, not" \
    "'$train_size' / '$dev_size'"
  exit 1
fi
read -ra locale_list <<< "$languages"
iso_list=()
for l in "${locale_list[@]}"; do iso_list+=("${l%%-*}"); done  # zh-CN -> zh (supervision.language)

manifests=$data/manifests
subsets=$data/subsets/pepsi
if [ "$precompute_features" = true ]; then feats=$data/fbank/pepsi; else feats=$subsets; fi
clovacall_train=clovacall_cuts_train
clovacall_test=clovacall_cuts_test
if [ "$clovacall_variant" = raw ]; then
  clovacall_train=clovacall_cuts_train_raw
  clovacall_test=clovacall_cuts_test_raw
fi

cv_manifests() {  # cv_manifests <part>: the per-locale CV cut manifests of one part
  local l
  for l in "${locale_list[@]}"; do printf '%s ' "$manifests/commonvoice_cuts_${l}_$1.jsonl.gz"; done
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: CV-13 manifests of $languages; ClovaCall (${clovacall_dir:-not given})"
  [ -n "$cv_dir" ] || { log "give --cv-dir"; exit 1; }
  cv_release=$cv_dir
  [ -d "$cv_dir/cv-corpus-13.0-2023-03-09" ] && cv_release=$cv_dir/cv-corpus-13.0-2023-03-09
  tsvs=
  for l in "${locale_list[@]}"; do
    for part in train dev test; do tsvs+="$cv_release/$l/$part.tsv "; done
  done
  outputs="$(cv_manifests train)$(cv_manifests dev)$(cv_manifests test)"
  if stage_needed pepsi_prepare_commonvoice "$tsvs" "$outputs" "languages=$languages"; then
    local/prepare_commonvoice.sh --corpus-dir "$cv_dir" --output-dir "$manifests" \
      --languages "$languages" --train-utts all --dev-utts all --nj "$nj" \
      2>&1 | tee "$expdir/log/prepare_commonvoice.log"
    stage_done pepsi_prepare_commonvoice "$tsvs" "$outputs" "languages=$languages"
  fi
  if [ -n "$clovacall_dir" ]; then
    outputs="$manifests/$clovacall_train.jsonl.gz $manifests/$clovacall_test.jsonl.gz"
    if stage_needed pepsi_prepare_clovacall "$clovacall_dir" "$outputs" \
        "variant=$clovacall_variant"; then
      local/prepare_clovacall.sh --corpus-dir "$clovacall_dir" --output-dir "$manifests" \
        --variant "$clovacall_variant" --nj "$nj" 2>&1 | tee "$expdir/log/prepare_clovacall.log"
      stage_done pepsi_prepare_clovacall "$clovacall_dir" "$outputs" "variant=$clovacall_variant"
    fi
  fi
fi

subsample() {  # subsample <log name> <subsample_cuts options...>
  local name=$1; shift
  python -m speechkd.bin.subsample_cuts --resample 16000 "$@" \
    --log-file "$expdir/log/subsample_$name.log"
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: per language: train ($train_size), dev ($dev_size) by up-votes, the whole test"
  seed_opts=()
  [ -n "$vote_seed" ] && seed_opts=(--seed "$vote_seed")
  for i in "${!locale_list[@]}"; do
    l=${locale_list[$i]} iso=${iso_list[$i]}
    inputs=
    for part in train dev test; do inputs+="$manifests/commonvoice_cuts_${l}_$part.jsonl.gz "; done
    train=$subsets/commonvoice_cuts_train_$iso.jsonl.gz
    dev=$subsets/commonvoice_cuts_dev_$iso.jsonl.gz
    test=$subsets/commonvoice_cuts_test_$iso.jsonl.gz
    params="train_size=$train_size dev_size=$dev_size vote_seed=$vote_seed"
    if stage_needed "pepsi_subsets_$iso" "$inputs" "$train $dev $test" "$params"; then
      # no clip in two of train, dev and test (the CV splits are disjoint; a mixed-up corpus is not)
      subsample "test_$iso" --cuts "$manifests/commonvoice_cuts_${l}_test.jsonl.gz" --out "$test" \
        --per-language all --by random --languages "$iso"
      subsample "train_$iso" --cuts "$manifests/commonvoice_cuts_${l}_train.jsonl.gz" \
        --out "$train" --per-language "$train_size" --by up_votes "${seed_opts[@]}" \
        --languages "$iso" --disjoint-from "$test"
      subsample "dev_$iso" --cuts "$manifests/commonvoice_cuts_${l}_dev.jsonl.gz" --out "$dev" \
        --per-language "$dev_size" --by up_votes "${seed_opts[@]}" --languages "$iso" \
        --disjoint-from "$train" "$test"
      stage_done "pepsi_subsets_$iso" "$inputs" "$train $dev $test" "$params"
    fi
  done
  if [ -n "$clovacall_dir" ]; then
    inputs="$manifests/$clovacall_train.jsonl.gz $manifests/$clovacall_test.jsonl.gz"
    outputs="$subsets/clovacall_cuts_train.jsonl.gz $subsets/clovacall_cuts_test.jsonl.gz"
    if stage_needed pepsi_subsets_clovacall "$inputs" "$outputs" ""; then
      subsample clovacall_test --cuts "$manifests/$clovacall_test.jsonl.gz" \
        --out "$subsets/clovacall_cuts_test.jsonl.gz" --per-language all --by random
      subsample clovacall_train --cuts "$manifests/$clovacall_train.jsonl.gz" \
        --out "$subsets/clovacall_cuts_train.jsonl.gz" --per-language all --by random \
        --disjoint-from "$subsets/clovacall_cuts_test.jsonl.gz"
      stage_done pepsi_subsets_clovacall "$inputs" "$outputs" ""
    fi
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ "$precompute_features" = true ]; then
    log "Stage 2: Whisper log-mel features ($num_mel_bins bins) with $nj jobs per set"
    params="nj-independent whisper num_mel_bins=$num_mel_bins"
    if stage_needed pepsi_features "$subsets" "$feats" "$params"; then
      $train_cmd JOB=1:$nj "$feats/log/features.JOB.log" \
        python -m speechkd.bin.compute_features --from-dir "$subsets" \
          --pattern '*_cuts_*.jsonl.gz' --output-dir "$feats" --feature-type whisper \
          --num-mel-bins "$num_mel_bins" --shard JOB/$nj
      python -m speechkd.bin.compute_features --from-dir "$subsets" --pattern '*_cuts_*.jsonl.gz' \
        --output-dir "$feats" --merge "$nj" --log-file "$feats/log/merge.log"
      stage_done pepsi_features "$subsets" "$feats" "$params"
    fi
  else
    log "Stage 2: skipped (--precompute-features false: features come from the audio)"
  fi
fi

model_dir() {  # model_dir <hub name | directory>: the directory stage 3 fills (or the directory)
  if [ -d "$1" ]; then echo "$1"; else echo "$data/models/${1//\//__}"; fi
}

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: the foundation model $base"
  if [ -d "$base" ]; then
    log "$base: a local model directory, used as it is"
  else
    dir=$(model_dir "$base")
    if stage_needed "model_${base//\//__}" "" "$dir" "model=$base"; then
      python -m speechkd.bin.fetch_whisper --model "$base" --out-dir "$dir" \
        2>&1 | tee "$expdir/log/download_${base//\//__}.log" || {
        log "could not download $base (HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-}; to fetch it run" \
          "HF_HUB_OFFLINE=0 $0 --stage 3 --stop-stage 3, or pass a local directory)"
        exit 1
      }
      stage_done "model_${base//\//__}" "" "$dir" "model=$base"
    fi
  fi
fi

# The method stages (10-19) read these.
languages=${iso_list[*]}
base_dir=$(model_dir "$base")
tokenizer=$base_dir
train_cuts="$feats/commonvoice_cuts_train_{lang}.jsonl.gz"
dev_cuts="$feats/commonvoice_cuts_dev_{lang}.jsonl.gz"
test_sets="test=$feats/commonvoice_cuts_test_{lang}.jsonl.gz"
method_exp=$expdir/pepsi
report_title=${report_title:-"PEPSI: $base on Common Voice 13.0 ($languages)"}
if [ -n "$clovacall_dir" ]; then
  transfer_name=clovacall
  transfer_train_cuts=$feats/clovacall_cuts_train.jsonl.gz
  transfer_test_sets="clovacall_test=$feats/clovacall_cuts_test.jsonl.gz"
else
  transfer_name=
fi

if [ $stop_stage -ge 10 ]; then
  template=local/recipes/pepsi.sh
  [ -f "$template" ] || { log "$template not found: the method stages are not available"; exit 1; }
  # shellcheck disable=SC1090
  . "$template"
fi

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  [ -f "$method_exp/report.md" ] && sections+=(--section "$method_exp/report.md")
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "PEPSI on Common Voice 13.0 and ClovaCall" \
    --commands-file "$expdir/commands.log" "${sections[@]}"
fi
log "done"
