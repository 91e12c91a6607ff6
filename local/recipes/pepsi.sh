# PEPSI method stages (10-19), shared by every corpus recipe (egs/<corpus>/pepsi): adapt a Whisper
# foundation model to one target language at a time with decoder LoRA on a lottery ticket
# (Kim et al., 2024). Source me from a run.sh after its data stages, with path.sh, cmd.sh and
# local/stage_lib.sh loaded, $stage/$stop_stage set and these variables defined:
#   languages        target languages, ISO 639-1 codes as in supervision.language ("ko sw en");
#                    every system is trained per language (one model each)
#   base_dir         the foundation model (save_pretrained directory), e.g. whisper-large-v2
#   tokenizer        its tokenizer directory
#   train_cuts       CutSet of one language, "{lang}" standing for the code, e.g.
#                    data/fbank/cuts_train_{lang}.jsonl.gz
#   test_sets        "name=cuts-with-{lang} ..."; decoded as set <name>_<lang> (test_ko)
#   method_exp       experiment directory of this run, e.g. exp/pepsi
# Optional (defaults below): dev_cuts ({lang} pattern; empty: no validation loss), systems,
# pepsi_conf, train_opts, full_opts, imp_opts, decode_opts, target_sparsity, fig4_languages,
# fig4_milestones, fig4_model, subnet_pairs, subnet_sparsities, cer_languages, lang_jobs,
# report_title and the transfer experiment (Table 4): transfer_name, transfer_language,
# transfer_train_cuts, transfer_dev_cuts, transfer_test_sets.
#
# Stages (systems as in the paper's Tables 3 and 4):
#   10  zero-shot decoding of the foundation model on every test set (and the transfer test sets)
#   11  Whisper FFT: full fine-tuning per language                      (conf: ft.yaml)
#   12  Whisper LoRA: PEPSI's decoder LoRA, no pruning                  (lora.yaml)
#   13  IMP per language (pepsi_prune: LoRA on the decoder attention, 2 epochs at LR 1e-5 per
#       round, 10% of the parameters still alive pruned per round, rewinding to the pretrained
#       weights) to $target_sparsity, exporting the ticket of every milestone   (imp.yaml)
#   14  Whisper LTH-FT: the ticket fine-tuned, pruned weights held at zero  (lth_ft.yaml)
#   15  PEPSI: the ticket with a fresh decoder LoRA, only LoRA trained (LR 1e-3)  (pepsi.yaml)
#   16  decoding of FFT, LoRA, LTH (the ticket, zero-shot), LTH-FT and PEPSI per language
#   17  analysis decodes: the language-specific subnetworks (tickets pruned on language A and on
#       B, both zero-shot on A's test sets: the paper's Table 1) and the PEPSI Fig. 4 models
#       (every milestone's masks applied to the IMP-trained Whisper+LoRA weights, zero-shot)
#   18  transfer (Table 4): FFT and LoRA from the foundation model, LTH-FT and PEPSI from the
#       ticket pruned on $transfer_language, all trained on the transfer corpus; all six decoded
#   19  figures (Fig. 3b alive ratio per layer group and IMP iteration; Fig. 4 error rate versus
#       prune %) and the report section $method_exp/report.md
# Layout: $method_exp/zeroshot/decode, $method_exp/<lang>/{ft,lora,lth_ft,pepsi}/ (whisper_train),
# $method_exp/<lang>/imp/ (pepsi_prune; the ticket pruned to p is milestones/prune-<100p>/, its
# zero-shot decodes in decode/, the Fig. 4 decodes in decode-trained/),
# $method_exp/transfer_<name>/<system>/, figures and report.md in $method_exp.
# Sparsities (target_sparsity, fig4_milestones, subnet_sparsities) are pruned shares of ALL
# Whisper parameters (PEPSI: 0.77B of 1.54B alive at 50%); the unprunable ones (biases, norms,
# fixed positions, LoRA-carrying q/v) count as alive, so more of the prunable weights go. A
# sparsity beyond the prunable share stops stage 13 (whisper-large-v2: at most 86.2%).

: "${systems:=ft lora lth lth_ft pepsi}"   # zero-shot is always decoded
: "${pepsi_conf:=$SPEECHKD_ROOT/conf/pepsi}"  # <system>.yaml: whisper_train; imp.yaml: pepsi_prune
: "${dev_cuts:=}"
: "${train_opts:=}"        # extra whisper_train flags of every system (they override the yaml)
: "${full_opts:=}"         # extra whisper_train flags of the full-weight systems (ft, lth_ft)
: "${imp_opts:=}"          # extra pepsi_prune flags (they override imp.yaml)
: "${decode_opts:=}"       # extra whisper_decode flags
: "${target_sparsity:=0.5}"  # pruned share of all parameters (the paper: 50%)
: "${fig4_languages:=}"    # languages of Fig. 4 (the paper: ko); their IMP runs to the last one
: "${fig4_milestones:=0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9}"
# Fig. 4 decodes the trained-model (the masks on the IMP-trained weights, Sec. 6.2) or the model
# (the ticket) of every milestone
: "${fig4_model:=trained-model}"
: "${subnet_pairs:=}"      # "A:B ...": tickets pruned on A and on B, both decoded on A (Table 1)
: "${subnet_sparsities:=0.19 0.3439}"  # alive 81% and 65.6% (Table 1: 100.0, 81.0, 65.7%)
: "${cer_languages:=zh ja ko th}"  # decoded and scored by CER, the others by WER (the report
                                   # adds the other metric from the same hypotheses)
: "${lang_jobs:=1}"        # languages (and transfer systems) run at once
: "${report_title:=PEPSI}"
: "${transfer_name:=}"     # e.g. clovacall; empty: no transfer experiment
: "${transfer_language:=}"
: "${transfer_train_cuts:=}"
: "${transfer_dev_cuts:=}"
: "${transfer_test_sets:=}"  # "name=cuts ..." (one language: $transfer_language)

for _var in languages base_dir tokenizer train_cuts test_sets method_exp; do
  if [ -z "${!_var:-}" ]; then
    log "local/recipes/pepsi.sh: variable $_var is not set by the recipe"; exit 1
  fi
done
unset _var

pp_has() {  # pp_has <word> <list...>: is word in the list
  local w=$1; shift
  case " $* " in *" $w "*) return 0 ;; *) return 1 ;; esac
}

for _sys in $systems; do
  pp_has "$_sys" ft lora lth lth_ft pepsi || {
    log "systems: unknown system '$_sys' (choose from: ft lora lth lth_ft pepsi)"; exit 1; }
done
for _pair in $subnet_pairs; do
  if ! [[ $_pair =~ ^([^:]+):([^:]+)$ ]] || ! pp_has "${BASH_REMATCH[1]}" $languages \
      || ! pp_has "${BASH_REMATCH[2]}" $languages; then
    log "subnet_pairs: '$_pair' is not A:B with A and B among the languages ($languages)"; exit 1
  fi
done
for _lang in $fig4_languages; do
  pp_has "$_lang" $languages || {
    log "fig4_languages: $_lang is not among the languages ($languages)"; exit 1; }
done
case $fig4_model in model|trained-model) ;; *)
  log "fig4_model must be model or trained-model, not '$fig4_model'"; exit 1 ;;
esac
if [ -n "$transfer_name" ]; then
  if [ -z "$transfer_train_cuts" ] || [ -z "$transfer_test_sets" ]; then
    log "transfer $transfer_name: set transfer_train_cuts and transfer_test_sets"; exit 1
  fi
  pp_has "$transfer_language" $languages || {
    log "transfer_language '$transfer_language' is not among the languages ($languages):" \
      "its ticket is pruned there"; exit 1; }
fi
unset _sys _pair _lang

pp_cuts() { echo "${1//\{lang\}/$2}"; }  # pp_cuts <pattern> <lang>
pp_metric() { if pp_has "$1" $cer_languages; then echo cer; else echo wer; fi; }
pp_pct() { awk -v p="$1" 'BEGIN { printf "%g\n", 100 * p }'; }  # 0.271 -> 27.1

pp_milestones() {  # pp_milestones <lang>: sorted sparsities exported by the language's IMP run
  local lang=$1 pair list=$target_sparsity
  pp_has "$lang" $fig4_languages && list="$list $fig4_milestones"
  for pair in $subnet_pairs; do
    if [ "${pair%%:*}" = "$lang" ] || [ "${pair#*:}" = "$lang" ]; then
      list="$list $subnet_sparsities"
    fi
  done
  # shellcheck disable=SC2086
  printf '%s\n' $list | awk '{ printf "%.10g\n", $1 }' | sort -g -u | tr '\n' ' '
}

pp_ticket() {  # pp_ticket <lang> [sparsity]: directory of the ticket (default: target sparsity)
  echo "$method_exp/$1/imp/milestones/prune-$(pp_pct "${2:-$target_sparsity}")"
}

pp_description() {
  case $1 in
    ft) echo "Whisper FFT: every weight trained" ;;
    lora) echo "Whisper LoRA: decoder q/v LoRA (r=8), no pruning, merged" ;;
    lth) echo "Whisper LTH: IMP ticket ($(pp_pct "$target_sparsity")% pruned), zero-shot" ;;
    lth_ft) echo "Whisper LTH-FT: IMP ticket, surviving weights trained" ;;
    pepsi) echo "PEPSI: IMP ticket + decoder q/v LoRA (r=8), only LoRA trained, merged" ;;
    *) echo "$1" ;;
  esac
}

pp_meta() {  # pp_meta <dir> <model> <description>: results_meta.json of a decode-only system
  mkdir -p "$1"
  printf '{\n  "method": "pepsi",\n  "model": "%s",\n  "description": "%s",\n' "$2" "$3" \
    > "$1/.tmp-results_meta.json"
  printf '  "trainable_params": 0\n}\n' >> "$1/.tmp-results_meta.json"
  mv "$1/.tmp-results_meta.json" "$1/results_meta.json"
}

pp_parallel() {  # pp_parallel "<command>" <item...>: "<command> <item>", $lang_jobs at once
  local fn=$1 item pid failed=0
  shift
  local pids=()
  for item in "$@"; do
    if [ "$lang_jobs" -le 1 ]; then
      $fn "$item"
      continue
    fi
    $fn "$item" &
    pids+=("$!")
    if [ "${#pids[@]}" -ge "$lang_jobs" ]; then
      wait "${pids[0]}" || failed=1
      pids=("${pids[@]:1}")
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  if [ "$failed" -ne 0 ]; then
    log "'$fn' failed for at least one of: $* (see the logs above)"; exit 1
  fi
}

pp_imp_flags() {  # pp_imp_flags <yaml>: pepsi_prune flags of a YAML file, one word a line
  python - "$1" <<'EOF'
import sys

import yaml

path = sys.argv[1]
data = yaml.safe_load(open(path, encoding="utf-8")) or {}
if not isinstance(data, dict):
    sys.exit(f"{path}: expected a mapping of pepsi_prune options to values")
for key, value in data.items():
    if str(key) in ("target_sparsity", "milestones"):
        sys.exit(f"{path}: {key} is a recipe option (target_sparsity, fig4_milestones)")
    flag = "--" + str(key).replace("_", "-")
    if value is True:
        print(flag)
    elif value is not False and value is not None:
        print(flag)
        print(*(value if isinstance(value, list) else [value]), sep="\n")
EOF
}

pp_decode() {  # pp_decode <decode dir> <model> <lang> <set> <cuts>: decode and score one set
  local dir=$1 model=$2 lang=$3 set=$4 cuts=$5
  local metric key
  metric=$(pp_metric "$lang")
  key=${dir#"$method_exp"/}
  key=pepsi_decode_${key//\//_}_$set
  if stage_needed "$key" "$model $cuts" "$dir/scores-$set.json" "metric=$metric $decode_opts"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/log/decode-$set.log" \
      python -m speechkd.bin.whisper_decode --model-dir "$model" --tokenizer "$tokenizer" \
        --cuts "$cuts" --set-name "$set" --out-dir "$dir" --metric "$metric" --no-progress \
        $decode_opts
    stage_done "$key" "$model $cuts" "$dir/scores-$set.json" "metric=$metric $decode_opts"
  fi
}

pp_decode_sets() {  # pp_decode_sets <decode dir> <model> <lang>: every test set of the language
  local spec
  for spec in $test_sets; do
    pp_decode "$1" "$2" "$3" "${spec%%=*}_$3" "$(pp_cuts "${spec#*=}" "$3")"
  done
}

pp_train() {  # pp_train <dir> <system> <lang> <train> <dev> <init> [masks]: one whisper_train run
  local dir=$1 sys=$2 lang=$3 train=$4 dev=$5 init=$6 masks=${7:-}
  local conf=$pepsi_conf/$sys.yaml extra=() key
  [ -f "$conf" ] || { log "no config $conf for system $sys"; exit 1; }
  [ -n "$dev" ] && extra+=(--dev-cuts "$dev")
  [ -n "$masks" ] && extra+=(--masks "$masks")
  local opts=$train_opts
  case $sys in ft|lth_ft) opts="$full_opts $train_opts" ;; esac
  local inputs="$train $dev $init $conf $masks"
  key=${dir#"$method_exp"/}
  key=pepsi_train_${key//\//_}
  if stage_needed "$key" "$inputs" "$dir/model" "opts=$opts"; then
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/log/whisper_train.log" \
      python -m speechkd.bin.whisper_train --config "$conf" --init-from "$init" \
        --tokenizer "$tokenizer" --train-cuts "$train" --exp-dir "$dir" \
        --method-name pepsi --model-name "${dir#"$method_exp"/}" \
        --description "$(pp_description "$sys"), $lang" --resume --no-progress "${extra[@]}" \
        $opts
    stage_done "$key" "$inputs" "$dir/model" "opts=$opts"
  fi
}

pp_train_language() {  # pp_train_language <system> <lang>: one system trained on the language
  local sys=$1 lang=$2 init=$base_dir masks=
  case $sys in lth_ft|pepsi)
    init=$(pp_ticket "$lang")/model
    masks=$(pp_ticket "$lang")/masks.safetensors ;;
  esac
  pp_train "$method_exp/$lang/$sys" "$sys" "$lang" "$(pp_cuts "$train_cuts" "$lang")" \
    "$(pp_cuts "$dev_cuts" "$lang")" "$init" "$masks"
}

pp_stage_train() {  # pp_stage_train <system>: the system on every language (if it is selected)
  pp_has "$1" $systems || { log "$1 is not among the systems ($systems): skipped"; return 0; }
  # shellcheck disable=SC2086
  pp_parallel "pp_train_language $1" $languages
}

pp_imp() {  # pp_imp <lang>: IMP on the language to its last milestone
  local lang=$1 dir=$method_exp/$1/imp conf=$pepsi_conf/imp.yaml flags milestones target
  local train dev outputs p flag_list=() dev_opts=()
  [ -f "$conf" ] || { log "no config $conf for the IMP stage"; exit 1; }
  milestones=$(pp_milestones "$lang")
  target=${milestones% }
  target=${target##* }
  train=$(pp_cuts "$train_cuts" "$lang")
  dev=$(pp_cuts "$dev_cuts" "$lang")
  [ -n "$dev" ] && dev_opts=(--dev-cuts "$dev")
  outputs="$dir/imp-history.json"
  for p in $milestones; do outputs="$outputs $(pp_ticket "$lang" "$p")/result.json"; done
  local params="target=$target milestones=$milestones imp_opts=$imp_opts"
  if stage_needed "pepsi_imp_$lang" "$train $dev $base_dir $conf" "$outputs" "$params"; then
    flags=$(pp_imp_flags "$conf")
    [ -n "$flags" ] && mapfile -t flag_list <<< "$flags"
    # shellcheck disable=SC2086
    $cuda_cmd "$dir/log/pepsi_prune.log" \
      python -m speechkd.bin.pepsi_prune --init-from "$base_dir" --tokenizer "$tokenizer" \
        --train-cuts "$train" "${dev_opts[@]}" --exp-dir "$dir" --target-sparsity "$target" \
        --milestones $milestones "${flag_list[@]}" --method-name pepsi --model-name "$lang/imp" \
        --description "IMP on $lang to $(pp_pct "$target")% pruned (Whisper LTH tickets)" \
        --resume --no-progress $imp_opts
    stage_done "pepsi_imp_$lang" "$train $dev $base_dir $conf" "$outputs" "$params"
  fi
}

pp_decode_language() {  # pp_decode_language <lang>: every selected system on the language's sets
  local lang=$1 sys
  for sys in $systems; do
    if [ "$sys" = lth ]; then
      pp_decode_sets "$(pp_ticket "$lang")/decode" "$(pp_ticket "$lang")/model" "$lang"
    else
      pp_decode_sets "$method_exp/$lang/$sys/decode" "$method_exp/$lang/$sys/model" "$lang"
    fi
  done
}

pp_analysis_task() {  # pp_analysis_task <lang>:<decode dir>:<model>: decode the language's sets
  local lang=${1%%:*} rest=${1#*:}
  pp_decode_sets "${rest%%:*}" "${rest#*:}" "$lang"
}

pp_transfer_system() {  # pp_transfer_system <system>: train (if needed), decode the transfer sets
  local sys=$1 dir=$method_exp/transfer_$transfer_name/$1 model spec
  local ticket
  ticket=$(pp_ticket "$transfer_language")
  case $sys in
    ft|lora)
      pp_train "$dir" "$sys" "$transfer_language" "$transfer_train_cuts" "$transfer_dev_cuts" \
        "$base_dir"
      model=$dir/model ;;
    lth_ft|pepsi)
      pp_train "$dir" "$sys" "$transfer_language" "$transfer_train_cuts" "$transfer_dev_cuts" \
        "$ticket/model" "$ticket/masks.safetensors"
      model=$dir/model ;;
    lth)
      dir=$ticket
      model=$ticket/model ;;
  esac
  for spec in $transfer_test_sets; do
    pp_decode "$dir/decode" "$model" "$transfer_language" "${spec%%=*}" "${spec#*=}"
  done
}

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: zero-shot decoding of $base_dir"
  pp_meta "$method_exp/zeroshot" zero-shot "Whisper zero-shot: the foundation model as it is"
  # shellcheck disable=SC2086
  pp_parallel "pp_decode_sets $method_exp/zeroshot/decode $base_dir" $languages
  if [ -n "$transfer_name" ]; then
    for _spec in $transfer_test_sets; do
      pp_decode "$method_exp/zeroshot/decode" "$base_dir" "$transfer_language" "${_spec%%=*}" \
        "${_spec#*=}"
    done
  fi
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: Whisper FFT on each of: $languages"
  pp_stage_train ft
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  log "Stage 12: Whisper LoRA (decoder q/v LoRA, no pruning) on each of: $languages"
  pp_stage_train lora
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  log "Stage 13: IMP to $(pp_pct "$target_sparsity")% pruned on each of: $languages"
  # shellcheck disable=SC2086
  pp_parallel pp_imp $languages
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  log "Stage 14: Whisper LTH-FT (the ticket, surviving weights trained) on each of: $languages"
  pp_stage_train lth_ft
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  log "Stage 15: PEPSI (the ticket + decoder LoRA, LoRA trained) on each of: $languages"
  pp_stage_train pepsi
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  log "Stage 16: decoding $systems on the test sets of each language"
  # shellcheck disable=SC2086
  pp_parallel pp_decode_language $languages
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  log "Stage 17: language-specific subnetworks ($subnet_pairs) and Fig. 4 ($fig4_languages)"
  # <lang>:<decode dir>:<model>, each once (the same ticket may serve several analyses)
  _tasks=()
  for _pair in $subnet_pairs; do
    for _on in "${_pair%%:*}" "${_pair#*:}"; do
      for _p in $subnet_sparsities; do
        _t=$(pp_ticket "$_on" "$_p")
        _tasks+=("${_pair%%:*}:$_t/decode:$_t/model")
      done
    done
  done
  for _lang in $fig4_languages; do
    for _p in $fig4_milestones; do
      _t=$(pp_ticket "$_lang" "$_p")
      if [ "$fig4_model" = trained-model ]; then
        _tasks+=("$_lang:$_t/decode-trained:$_t/trained-model")
      else
        _tasks+=("$_lang:$_t/decode:$_t/model")
      fi
    done
  done
  if [ ${#_tasks[@]} -gt 0 ]; then
    mapfile -t _tasks < <(printf '%s\n' "${_tasks[@]}" | sort -u)
    pp_parallel pp_analysis_task "${_tasks[@]}"
  fi
  unset _tasks _pair _p _lang _on _t
fi

if [ $stage -le 18 ] && [ $stop_stage -ge 18 ] && [ -n "$transfer_name" ]; then
  log "Stage 18: transfer to $transfer_name ($transfer_language; tickets pruned on" \
    "$transfer_language): $systems"
  # shellcheck disable=SC2086
  pp_parallel pp_transfer_system $systems
fi

pp_label() {
  case $1 in
    zeroshot) echo "Whisper zero-shot" ;;
    ft) echo "Whisper FFT" ;;
    lora) echo "Whisper LoRA" ;;
    lth) echo "Whisper LTH" ;;
    lth_ft) echo "Whisper LTH-FT" ;;
    pepsi) echo "PEPSI" ;;
  esac
}

if [ $stage -le 19 ] && [ $stop_stage -ge 19 ]; then
  log "Stage 19: figures and report $method_exp/report.md"
  report_args=(--title "$report_title" --out "$method_exp/report.md")
  for _spec in $test_sets; do report_args+=(--set "${_spec%%=*}"); done
  for _lang in $languages; do
    report_args+=(--system "$_lang:$(pp_label zeroshot)=$method_exp/zeroshot/decode")
    for _sys in $systems; do
      if [ "$_sys" = lth ]; then
        _t=$(pp_ticket "$_lang")
        report_args+=(--system "$_lang:$(pp_label lth)=$_t/decode,$_t/result.json")
      else
        _d=$method_exp/$_lang/$_sys
        report_args+=(--system "$_lang:$(pp_label "$_sys")=$_d/decode,$_d/params.json")
      fi
    done
    # Fig. 3b: alive share per layer group and IMP round
    _png=$method_exp/fig3b_alive_$_lang.png
    if stage_needed "pepsi_fig3b_$_lang" "$method_exp/$_lang/imp/imp-history.json" "$_png" ""; then
      python -m speechkd.bin.pruning_plots alive --history "$method_exp/$_lang/imp" --out "$_png"
      stage_done "pepsi_fig3b_$_lang" "$method_exp/$_lang/imp/imp-history.json" "$_png" ""
    fi
    report_args+=(--alive "$_lang=$method_exp/$_lang/imp,fig3b_alive_$_lang.png")
  done
  for _lang in $fig4_languages; do
    points=(--point "0=$method_exp/zeroshot/decode")
    _dir=decode
    [ "$fig4_model" = trained-model ] && _dir=decode-trained
    sets=()
    _inputs=
    for _spec in $test_sets; do
      sets+=(--set "${_spec%%=*}_$_lang")
      _inputs+="$method_exp/zeroshot/decode/scores-${_spec%%=*}_$_lang.json "
      for _p in $fig4_milestones; do
        _inputs+="$(pp_ticket "$_lang" "$_p")/$_dir/scores-${_spec%%=*}_$_lang.json "
      done
    done
    for _p in $fig4_milestones; do
      points+=(--point "$(pp_pct "$_p")=$(pp_ticket "$_lang" "$_p")/$_dir")
    done
    _png=$method_exp/fig4_prune_$_lang.png
    if stage_needed "pepsi_fig4_$_lang" "$_inputs" "$_png $method_exp/fig4_prune_$_lang.md" ""; then
      python -m speechkd.bin.pruning_plots prune-curve "${points[@]}" "${sets[@]}" \
        --title "PEPSI Fig. 4: $_lang, masks on the $fig4_model" \
        --out "$_png" --table "$method_exp/fig4_prune_$_lang.md"
      stage_done "pepsi_fig4_$_lang" "$_inputs" "$_png $method_exp/fig4_prune_$_lang.md" ""
    fi
    _caption="Fig. 4: error rate versus prune percentage, $_lang ($fig4_model of each"
    _caption="$_caption milestone, zero-shot)"
    report_args+=(--figure "$_caption=fig4_prune_$_lang.png,$method_exp/fig4_prune_$_lang.md")
  done
  for _pair in $subnet_pairs; do
    _a=${_pair%%:*}
    for _on in "$_a" "${_pair#*:}"; do
      report_args+=(--subnet "$_a:$_on:0=$method_exp/zeroshot/decode")
      for _p in $subnet_sparsities; do
        report_args+=(--subnet "$_a:$_on:$(pp_pct "$_p")=$(pp_ticket "$_on" "$_p")/decode")
      done
    done
  done
  if [ -n "$transfer_name" ]; then
    _t=$(pp_ticket "$transfer_language")
    report_args+=(--transfer-name "$transfer_name" --transfer-language "$transfer_language")
    report_args+=(--transfer-system "$(pp_label zeroshot)=$method_exp/zeroshot/decode")
    for _sys in $systems; do
      if [ "$_sys" = lth ]; then
        report_args+=(--transfer-system "$(pp_label lth)=$_t/decode,$_t/result.json")
      else
        _d=$method_exp/transfer_$transfer_name/$_sys
        report_args+=(--transfer-system "$(pp_label "$_sys")=$_d/decode,$_d/params.json")
      fi
    done
    for _spec in $transfer_test_sets; do report_args+=(--transfer-set "${_spec%%=*}"); done
  fi
  python -m speechkd.bin.pepsi_report "${report_args[@]}"
  unset _spec _lang _sys _t _d _dir _p _pair _a _on _caption _png _inputs
fi
