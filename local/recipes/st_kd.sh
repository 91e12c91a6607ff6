# Joint speech/text ST KD method stages (10-16), shared by every corpus recipe (egs/<corpus>/st_kd):
# compressing a joint wav2vec 2.0 + mBART speech translation model (B, SphEnc-TxtEnc-Dec 12-12-12)
# into half-depth students with response, feature and relation KD (Nayem et al., "Knowledge
# Distillation on Joint Task End-to-End Speech Translation").
# Source me from a run.sh after its data stages, with path.sh, cmd.sh and local/stage_lib.sh
# loaded, $stage/$stop_stage set and these variables defined:
#   train_cuts     ST CutSets of the training data (space separated, concatenated): source speech,
#                  transcript (supervision text), translation (supervision custom "translation")
#   test_sets      "name=cuts.jsonl.gz ..." the sets every system is scored on
#   tgt_lang       target language (ISO 639-1), e.g. de
#   method_exp     experiment directory of this run, e.g. exp/st_kd
# Optional (defaults below; an empty system list means no such systems): dev_cuts (empty: 1% of
# train held out as dev), src_lang, text, export_opts, w2v2_checkpoint, mbart_checkpoint,
# trust_fairseq_checkpoint, conf_dir, w2v2_pretrain_config, w2v2_pretrain_opts,
# mbart_pretrain_conf, mbart_pretrain_opts, teacher_arch, student_arch, student_init, c_systems,
# kd_systems, schemes, finetune_systems, train_opts, teacher_opts, student_opts,
# scheme_stage_opts, finetune_opts, ddsd_warmup_updates, student_ddsd_warmup_updates, ngpu, seed,
# parallel, decode_opts, param_models, param_vocab, report_title.
#
# Initialisation (paper Sec. 2.2 and 5.1): a student keeps the maximally spaced layers of its
# source ({0, 2, 4, 7, 9, 11} of 12 for 6 layers; 8-8-2: {0, 2, 3, 5, 6, 8, 9, 11} and {0, 11});
# the source is the pre-trained wav2vec 2.0 (its first layers, as B) + mBART ("pretrained", the
# paper's: Table 3's C:pre-trained beats C:fine-tuned in BLEU[sph], and the Task scheme leaves the
# S2T loss out of stages 1-2 because the decoder is still mBART's) or the fine-tuned teacher B
# ("finetuned", also called "teacher"). $student_init chooses it for the KD students, the first
# stage of the schemes and M*'s architecture; the C systems name theirs (ARCH:INIT), and the
# defaults train both C:pre-trained and C:fine-tuned (Table 3) whichever $student_init is.
#
# Systems (directories under $method_exp, each with system.json and decode_<set>_{sph,txt}/):
#   teacher            B: $teacher_arch from wav2vec 2.0 + mBART, no KD (conf/st_kd/schemes/teacher)
#   c_<arch>_<init>    C: a student architecture without KD, initialised from wav2vec 2.0 +
#                      mBART (init "pretrained") or from the fine-tuned teacher ("teacher" or
#                      "finetuned": the paper's "fine-tuned"), one per "ARCH:INIT" of $c_systems
#                      (Table 3)
#   <scheme>           M: $student_arch trained with KD, initialised as $student_init, one per
#                      scheme file of $kd_systems (conf/st_kd/schemes/kd_*.yaml: Table 4's terms)
#   scheme_<name>      M: the incremental training scheme <name> (module | task | all, Table 2),
#                      three runs stage1-3/ (conf/st_kd/schemes/<name>_stage{1,2,3}.yaml): stage 1
#                      initialised as $student_init, each later one from the previous one; the
#                      system is stage 3
#   mstar_<system>     M*: a KD student fine-tuned without KD (conf/st_kd/schemes/finetune.yaml),
#                      one per entry of $finetune_systems: a KD system, a scheme name, or "best"
#                      (the KD student of $kd_systems with the highest dev BLEU[sph])
#
# Stages:
#   10  fairseq speech_text_joint data (export_fairseq_st): <split>.tsv, audio, sentencepiece,
#       dictionary, config_st.yaml; mbart_text/ (the denoising text) when mBART is trained here
#   11  tiny wav2vec 2.0 and mBART pre-training, the stand-ins for wav2vec2-large and mbart.cc25
#       (skipped for a model given by $w2v2_checkpoint / $mbart_checkpoint)
#   12  teacher B
#   13  non-KD students C
#   14  KD students, training schemes, the best KD student on dev, M*
#   15  translation of the speech input and of the text input of every test set, BLEU (sacrebleu)
#   16  parameter table (python -m speechkd.bin.st_param_table) and the report (Tables 3-5)

: "${conf_dir:=$SPEECHKD_ROOT/conf/st_kd}"
: "${dev_cuts:=}"                    # empty: export_fairseq_st holds 1% of train out as dev
: "${src_lang:=en}"
: "${text:=}"                        # "LANG=FILE ...": more text for sentencepiece / mBART
: "${export_opts:=}"                 # e.g. "--spm-vocab-size 1000" or a downloaded mBART's
                                     # "--spm-model F --spm-dict F --mbart-langs L"
: "${w2v2_checkpoint:=}"             # pre-trained wav2vec 2.0 (fairseq); empty: stage 11
: "${mbart_checkpoint:=}"            # pre-trained mBART (fairseq); empty: stage 11
: "${trust_fairseq_checkpoint:=false}"  # external fairseq checkpoints are pickles: opt in
: "${w2v2_pretrain_config:=w2v2_pretrain_tiny}"   # $conf_dir/<name>.yaml (fairseq-hydra-train)
: "${w2v2_pretrain_opts:=}"          # its hydra overrides, e.g. "optimization.max_update=500"
: "${mbart_pretrain_conf:=$conf_dir/mbart_pretrain_tiny.sh}"  # bash arrays of the mBART commands
: "${mbart_pretrain_opts:=}"         # extra fairseq-train flags (after the conf's)
: "${teacher_arch:=teacher_12_12_12}"  # conf/st_kd/arch/<name>.yaml
: "${student_arch:=student_6_6_6}"   # the KD students' architecture
: "${student_init:=pretrained}"       # KD students and schemes: pretrained | finetuned
: "${c_systems=student_6_6_6:teacher student_6_6_6:pretrained student_8_8_2:pretrained}"
: "${kd_systems=kd_all kd_res_dec kd_res_enc kd_feat kd_rel kd_res kd_res_enc_feat
  kd_res_enc_avgfeat kd_res_feat}"
: "${schemes=module task all}"
: "${finetune_systems=best module task all}"
# fairseq-train options of every run (Sec. 4.2: Adam, inverse_sqrt with 5k warm-up, batches of at
# most 3, an update every 4 batches; raw audio up to 30 s = 480k samples); the per-run options
# below come after them (the last of a repeated option wins)
: "${train_opts:=--max-tokens 1440000 --batch-size 3 --update-freq 4 --warmup-updates 5000}"
: "${teacher_opts:=}"                # B
: "${student_opts:=}"                # C, KD students and stage 3 of the schemes
: "${scheme_stage_opts:=}"           # stages 1 and 2 of the schemes (their files: 10 epochs)
: "${finetune_opts:=}"               # M*
: "${ddsd_warmup_updates:=}"         # empty: the scheme files' value (5000)
# of the runs that start from trained weights (students copied from the fine-tuned teacher, the
# schemes' later stages, M*): they give the reference a high probability from the start, where
# DDSD's gradient does not vanish; runs from wav2vec 2.0 + mBART use $ddsd_warmup_updates
: "${student_ddsd_warmup_updates:=$ddsd_warmup_updates}"
: "${ngpu:=0}"                       # 0: CPU
: "${seed:=1}"
: "${parallel:=1}"                   # trainings / decodings launched at once
: "${decode_opts:=--beam 5 --max-len-b 200}"
: "${param_models:=teacher_12_12_12,student_6_6_6,student_8_8_2}"  # Table 1 (st_param_table)
: "${param_vocab:=}"                 # vocabulary of the parameter table; empty: the dictionary's
: "${report_title:=Joint speech/text ST KD}"

for _var in train_cuts test_sets tgt_lang method_exp; do
  if [ -z "${!_var:-}" ]; then
    log "local/recipes/st_kd.sh: variable $_var is not set by the recipe"; exit 1
  fi
done
unset _var
if [ -n "$w2v2_checkpoint$mbart_checkpoint" ] && [ "$trust_fairseq_checkpoint" != true ]; then
  log "the wav2vec 2.0 / mBART checkpoints are fairseq pickles: pass" \
    "--trust-fairseq-checkpoint true for files you trust"
  exit 1
fi
for _ckpt in "$w2v2_checkpoint" "$mbart_checkpoint"; do
  if [ -n "$_ckpt" ] && [ ! -f "$_ckpt" ]; then log "checkpoint $_ckpt not found"; exit 1; fi
done
unset _ckpt

# absolute: fairseq stores the checkpoint paths (teacher, initialisation) in its model configs
mkdir -p "$method_exp"
method_exp=$(cd "$method_exp" && pwd)
stkd_data=$method_exp/data/st                 # fairseq data of every ST run and decode
stkd_pretrain=$method_exp/pretrain
stkd_w2v2=${w2v2_checkpoint:-$stkd_pretrain/w2v2/checkpoint_last.pt}
stkd_mbart=${mbart_checkpoint:-$stkd_pretrain/mbart/checkpoint_last.pt}
stkd_teacher=$method_exp/teacher/checkpoint_best.pt
stkd_user_dir=$SPEECHKD_ROOT/speechkd/fairseq_plugin
stamp_dir=${stamp_dir:-$method_exp/.stages}
if [ "$ngpu" -gt 0 ]; then
  stkd_device=(--distributed-world-size "$ngpu")
  stkd_gpus=(--gpu "$ngpu")
else
  stkd_device=(--cpu)
  stkd_gpus=()
fi
stkd_test_names=()
for _spec in $test_sets; do stkd_test_names+=("${_spec%%=*}"); done
unset _spec

# ---------------------------------------------------------------------------------------------
# helpers

stkd_bg_pids=()
stkd_bg() {  # stkd_bg <command...>: run in the background, at most $parallel at once
  if [ "$parallel" -le 1 ]; then "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do sleep 1; done
  (stkd_bg_pids=(); "$@") &  # a job of its own, which may start jobs of its own
  stkd_bg_pids+=($!)
}

stkd_wait() {  # stkd_wait <what>: wait for every stkd_bg job; exit if one failed
  local pid failed=0
  for pid in "${stkd_bg_pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  stkd_bg_pids=()
  if [ "$failed" -gt 0 ]; then log "$1: $failed job(s) failed (see the logs above)"; exit 1; fi
}

declare -A stkd_flags
stkd_render() {  # stkd_render "KEY|ARCH|ARCH K=V ...|SCHEME|SCHEME K=V ..." ...: stkd_flags[KEY]
  # fairseq-train flags of conf/st_kd/arch/ARCH.yaml + conf/st_kd/schemes/SCHEME.yaml with the
  # options K=V on top (true/false: booleans), one python process for every run of a stage; the
  # ARCH option init=INIT (stkd_init_opts) is a student's initialisation: its source checkpoints
  # (student_init_overrides: the pre-trained wav2vec 2.0 + mBART or the fine-tuned teacher)
  local rendered
  rendered=$(python - "$stkd_teacher" "$stkd_w2v2" "$stkd_mbart" "$@" <<'EOF'
import shlex
import sys

from speechkd.fairseq_plugin.criterions.st_kd import scheme_train_args
from speechkd.fairseq_plugin.models.st_students import fairseq_train_args, student_init_overrides


def options(text):
    out = {}
    for item in text.split():
        key, _, value = item.partition("=")
        out[key] = {"true": True, "false": False}.get(value, value)
    return out


teacher, w2v, mbart, *specs = sys.argv[1:]
for spec in specs:
    key, arch, arch_opts, scheme, scheme_opts = spec.split("|")
    model = options(arch_opts)
    if "init" in model:  # own checkpoints or ones the user trusted (--trust-fairseq-checkpoint)
        sources = dict(teacher=teacher, w2v=w2v, mbart=mbart, trust=True)
        model = {**student_init_overrides(model.pop("init"), **sources), **model}
    flags = fairseq_train_args(arch, **model)
    flags += scheme_train_args(scheme, **options(scheme_opts))
    print(f"stkd_flags[{shlex.quote(key)}]={shlex.quote(shlex.join(flags))}")
EOF
  ) || { log "could not render the fairseq-train flags of: $*"; exit 1; }
  eval "$rendered"
}

stkd_crit() {  # stkd_crit <init>: scheme options of a run starting from <init>: the DDSD
  # warm-up, if set (init "pretrained": wav2vec 2.0 + mBART; else a trained teacher or student)
  local warmup=$student_ddsd_warmup_updates
  [ "$1" = pretrained ] && warmup=$ddsd_warmup_updates
  [ -n "$warmup" ] && echo "ddsd_warmup_updates=$warmup"
  return 0
}

stkd_train() {  # stkd_train <key> <stamp name> <dir> <inputs> [fairseq-train flags...]
  # one fairseq-train run with the rendered flags stkd_flags[key] (the architecture and scheme
  # files' content); fingerprinted on the inputs, the flags and the options; a run that finished
  # before with another configuration starts again from scratch (fairseq would resume it)
  local key=$1 name=$2 dir=$3 inputs=$4; shift 4
  local params="${stkd_flags[$key]} $train_opts $* seed=$seed ngpu=$ngpu"
  local out=$dir/checkpoint_best.pt
  if stage_needed "$name" "$inputs" "$out" "$params"; then
    if [ -f "$stamp_dir/$name.json" ]; then
      # it finished before with other inputs or options: fairseq would resume that run
      log "$name: configuration changed, removing the old checkpoints in $dir"
      rm -f "$dir"/checkpoint*.pt
    fi
    local flags tb=()
    eval "flags=(${stkd_flags[$key]})"
    tensorboard_importable && tb=(--tensorboard-logdir "$dir/tensorboard")
    mkdir -p "$dir/log"
    # shellcheck disable=SC2086
    # fairseq's torch.load of its own checkpoints (resuming, the teacher, --finetune-from-model)
    # unpickles them: this recipe's files or ones the user trusted above
    $cuda_cmd "${stkd_gpus[@]}" "$dir/log/train.log" env TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
      fairseq-train "$stkd_data" --user-dir "$stkd_user_dir" \
        --task speech_text_joint_to_text --config-yaml config_st.yaml \
        --train-subset train --valid-subset dev --max-source-positions 480000 \
        --max-target-positions 1024 --num-workers 0 --required-batch-size-multiple 1 \
        --optimizer adam --adam-betas '(0.9, 0.98)' --lr-scheduler inverse_sqrt --clip-norm 10.0 \
        --seed "$seed" --log-format simple --no-epoch-checkpoints "${stkd_device[@]}" \
        --save-dir "$dir" "${tb[@]}" "${flags[@]}" $train_opts "$@" \
      || { log "$name: training failed, see $dir/log/train.log"; exit 1; }
    [ -f "$out" ] || { log "$name: no $out (see $dir/log/train.log)"; exit 1; }
    stage_done "$name" "$inputs" "$out" "$params"
  fi
}

stkd_json_field() {  # stkd_json_field <file> <key>: one field of a JSON object
  python -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

stkd_system_json() {  # stkd_system_json <dir> KEY=VALUE...: <dir>/system.json (strings, "" = null)
  python - "$@" <<'EOF'
import json
import sys

from speechkd.utils.atomic import atomic_write_text

directory, *items = sys.argv[1:]
fields = {}
for item in items:
    key, _, value = item.partition("=")
    fields[key] = value or None
atomic_write_text(f"{directory}/system.json", json.dumps(fields, indent=2) + "\n")
EOF
}

stkd_depths() {  # the "S-T-D" depths of an architecture file
  python - "$conf_dir/arch/$1.yaml" <<'EOF'
import sys

import yaml

model = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["model"]
speech = model.get("student_speech_layers")
if speech is None:
    speech = int(model["w2v_encoder_layers"]) - int(model.get("drop_w2v_layers") or 0)
print(f"{speech}-{model['encoder_layers']}-{model['decoder_layers']}")
EOF
}

stkd_init_kind() {  # the init of system.json (the report's): pretrained | teacher
  case $1 in
    pretrained) echo pretrained ;;
    finetuned|teacher) echo teacher ;;
    *) log "student init must be pretrained or finetuned (teacher), not '$1'"; exit 1 ;;
  esac
}
# arch option of a student initialised as $1 (stkd_render expands it to the source checkpoints)
stkd_init_opts() { echo "init=$(stkd_init_kind "$1")"; }
stkd_init_inputs() {  # the checkpoints a student initialised as $1 is built from
  if [ "$(stkd_init_kind "$1")" = pretrained ]; then echo "$stkd_w2v2 $stkd_mbart"
  else echo "$stkd_teacher"; fi
}
stkd_kd_opts="teacher_path=$stkd_teacher trust_teacher_checkpoint=true"
stkd_pretrained_opts="w2v_path=$stkd_w2v2 load_pretrained_mbart_from=$stkd_mbart"
stkd_pretrained_opts="$stkd_pretrained_opts pretrained_trust_pickle=true"

# The Python of stage 14 (dev) and 15: translate the speech input ("sph") and the text input
# ("txt") of fairseq splits with each checkpoint (beam search, fairseq's SequenceGenerator with the
# target language tag as BOS, as fairseq-generate --infer-target-lang), write hyp-<set>.txt and
# score BLEU with sacrebleu (speechkd.eval.scoring: recogs, bleu-summary, scores-<set>.json).
# Also writes model.json (parameters, depths) beside each checkpoint's decode dirs.
read -r -d '' stkd_translate_py <<'EOF' || true
import argparse
import json
import logging
import time
from pathlib import Path

import torch
from fairseq.sequence_generator import SequenceGenerator

import speechkd.fairseq_plugin  # noqa: F401  (registers the models, the criterion)
from speechkd.eval.scoring import ScoringInput, score_input
from speechkd.fairseq_plugin.checkpoints import load_fairseq_model
from speechkd.fairseq_plugin.models.st_students import layer_depths
from speechkd.utils.atomic import atomic_write_text

parser = argparse.ArgumentParser(prog="st_kd translate")
parser.add_argument("--data", required=True)
parser.add_argument("--job", action="append", required=True, metavar="SYSTEM_DIR=SET=INPUT")
parser.add_argument("--tgt-lang", required=True)
parser.add_argument("--beam", type=int, default=5)
parser.add_argument("--max-len-b", type=int, default=200)
parser.add_argument("--lenpen", type=float, default=1.0)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--cpu", action="store_true")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("st_kd.translate")
device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"


class Encoder(torch.nn.Module):
    """The joint encoder fed one input: speech (src_tokens = audio) or text (src_tokens = text)."""

    def __init__(self, encoder, modality):
        super().__init__()
        self.inner, self.modality = encoder, modality

    def forward_torchscript(self, net_input):
        tokens, lengths = net_input["src_tokens"], net_input["src_lengths"]
        if self.modality == "sph":
            return self.inner(tokens, src_lengths=lengths)
        return self.inner(None, src_txt_tokens=tokens, src_txt_lengths=lengths)

    def reorder_encoder_out(self, encoder_out, new_order):
        part = self.inner.spch_encoder if self.modality == "sph" else self.inner.text_encoder
        return part.reorder_encoder_out(encoder_out, new_order)


class OneInput(torch.nn.Module):
    """The model with one input; its decoder is the (incremental) decoder of that input."""

    def __init__(self, model, modality):
        super().__init__()
        self.model = model
        self.encoder = Encoder(model.encoder, modality)
        multi = model.decoder
        self.decoder = multi.spch_decoder if modality == "sph" else multi.text_decoder

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return self.model.get_normalized_probs(net_output, log_probs, sample)

    def max_decoder_positions(self):
        return self.model.max_decoder_positions()


jobs = {}
for job in args.job:
    system_dir, split, modality = job.split("=")
    if modality not in ("sph", "txt"):
        raise SystemExit(f"--job {job}: input must be sph or txt")
    jobs.setdefault(system_dir, []).append((split, modality))
for system_dir, todo in jobs.items():
    system = json.loads(Path(system_dir, "system.json").read_text(encoding="utf-8"))
    checkpoint = system["checkpoint"]
    model, cfg, task = load_fairseq_model(checkpoint, True, {"data": args.data})  # own files
    model.to(device)
    depths = layer_depths(model)
    info = {
        "checkpoint": checkpoint,
        "params": sum(p.numel() for p in model.parameters()),
        "depths": "-".join(str(depths[p]) for p in ("speech", "text", "decoder")),
    }
    atomic_write_text(f"{system_dir}/model.json", json.dumps(info, indent=2) + "\n")
    tgt = task.target_dictionary
    bos = tgt.index(f"<lang:{args.tgt_lang}>")
    if bos == tgt.unk():
        raise SystemExit(f"{args.data}: no <lang:{args.tgt_lang}> in the dictionary")
    bpe = task.build_bpe(cfg.bpe)
    for split, modality in todo:
        start = time.time()
        task.load_dataset(split)
        dataset = task.dataset(split)
        net = OneInput(model, modality).eval()
        generator = SequenceGenerator(
            [net], tgt, beam_size=args.beam, max_len_a=0, max_len_b=args.max_len_b,
            len_penalty=args.lenpen,
        )
        sizes = dataset.n_frames if modality == "sph" else [len(t) for t in dataset.src_texts]
        order = sorted(range(len(dataset)), key=lambda i: sizes[i])
        hyps = {}
        for first in range(0, len(order), args.batch_size):
            sample = dataset.collater([dataset[i] for i in order[first:first + args.batch_size]])
            ni = sample["net_input"]
            keys = ("src_tokens", "src_lengths") if modality == "sph" else (
                "src_txt_tokens", "src_txt_lengths")
            net_input = {
                "src_tokens": ni[keys[0]].to(device), "src_lengths": ni[keys[1]].to(device)
            }
            with torch.no_grad():
                outputs = generator.generate([net], {"net_input": net_input}, bos_token=bos)
            for index, hypos in zip(sample["id"].tolist(), outputs):
                pieces = tgt.string(hypos[0]["tokens"].cpu(), extra_symbols_to_ignore={bos})
                hyps[index] = bpe.decode(pieces)
        ids = list(dataset.ids)
        data = ScoringInput(
            ids=ids, refs=list(dataset.tgt_texts), hyps=[hyps[i] for i in range(len(ids))],
            languages=[args.tgt_lang] * len(ids),
        )
        out = Path(system_dir, f"decode_{split}_{modality}")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / f"hyp-{split}.txt", "".join(f"{i} {h}\n" for i, h in zip(ids, data.hyps))
        )
        seconds = round(time.time() - start, 2)
        score_input(data, split, out, metric="bleu", input=modality, checkpoint=checkpoint,
                    beam=args.beam, seconds=seconds)
        log.info("%s %s [%s]: %d sentences in %.1f s", system_dir, split, modality, len(ids),
                 seconds)
EOF

stkd_translate() {  # stkd_translate <log> <set> <input...> -- <system dir...>: decode, score
  local logfile=$1 set=$2; shift 2
  local inputs=() dirs=() jobs=() d i
  while [ "$1" != -- ]; do inputs+=("$1"); shift; done
  shift
  dirs=("$@")
  for d in "${dirs[@]}"; do
    for i in "${inputs[@]}"; do jobs+=(--job "$d=$set=$i"); done
  done
  local cpu=()
  [ "$ngpu" -gt 0 ] || cpu=(--cpu)
  # shellcheck disable=SC2086
  $decode_cmd "$logfile" env TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
    python "$stkd_translate_script" --data "$stkd_data" --tgt-lang "$tgt_lang" "${cpu[@]}" \
      $decode_opts "${jobs[@]}" \
    || { log "translation failed, see $logfile"; exit 1; }
}

stkd_translate_script=$method_exp/local/st_kd_translate.py
stkd_write_translate() {  # the script above as a file (jobs on other machines run it from there)
  mkdir -p "$(dirname "$stkd_translate_script")"
  printf '%s\n' "$stkd_translate_py" > "$stkd_translate_script.tmp.$$"
  mv "$stkd_translate_script.tmp.$$" "$stkd_translate_script"
}

stkd_decode() {  # stkd_decode <set> <inputs> <system...>: decodes not done yet, $parallel groups
  local set=$1 inputs=$2; shift 2
  local todo=() sys dir checkpoint i
  local -A stamp_inputs=() stamp_outs=()  # of the systems to decode, for stage_done
  for sys in "$@"; do
    dir=$method_exp/$sys
    [ -f "$dir/system.json" ] || { log "no $dir/system.json: run the stage of $sys"; exit 1; }
    checkpoint=$(stkd_json_field "$dir/system.json" checkpoint)
    local outs=""
    for i in $inputs; do outs="$outs $dir/decode_${set}_$i"; done
    if stage_needed "decode_${sys}_$set" "$checkpoint $stkd_data/$set.tsv" "$outs" \
        "$inputs $decode_opts"; then
      todo+=("$sys")
      stamp_inputs[$sys]="$checkpoint $stkd_data/$set.tsv"
      stamp_outs[$sys]=$outs
    fi
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  stkd_write_translate
  local groups=$parallel
  [ "$groups" -le ${#todo[@]} ] || groups=${#todo[@]}
  local g members
  for g in $(seq 1 "$groups"); do
    members=()
    for i in "${!todo[@]}"; do
      [ $((i % groups + 1)) -eq "$g" ] && members+=("$method_exp/${todo[$i]}")
    done
    # shellcheck disable=SC2086
    stkd_bg stkd_translate "$method_exp/log/decode_${set}.$g.log" "$set" $inputs -- "${members[@]}"
  done
  stkd_wait "decoding of $set"
  for sys in "${todo[@]}"; do
    stage_done "decode_${sys}_$set" "${stamp_inputs[$sys]}" "${stamp_outs[$sys]}" \
      "$inputs $decode_opts"
  done
}

# ---------------------------------------------------------------------------------------------
# the systems

stkd_c_name() { local arch=${1%%:*} init=${1#*:}; echo "c_${arch}_$init"; }
stkd_scheme_dir() { echo "scheme_$1"; }
stkd_is_scheme() { case " $schemes " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

stkd_systems() {  # every system of this configuration, in report order
  local s
  echo teacher
  for s in $c_systems; do stkd_c_name "$s"; done
  for s in $kd_systems; do echo "$s"; done
  for s in $schemes; do stkd_scheme_dir "$s"; done
  for s in $finetune_systems; do
    if [ "$s" = best ]; then
      if [ -f "$method_exp/best_kd.json" ]; then echo "mstar_$(stkd_best)"; fi
    elif stkd_is_scheme "$s"; then
      echo "mstar_$(stkd_scheme_dir "$s")"
    else
      echo "mstar_$s"
    fi
  done | awk '!seen[$0]++'
}

stkd_best() {  # the KD student chosen by stage 14 (best_kd.json)
  stkd_json_field "$method_exp/best_kd.json" best
}

for _s in $c_systems; do
  case $_s in
    *:pretrained|*:finetuned|*:teacher) ;;
    *) log "c_systems: '$_s' is not ARCH:pretrained or ARCH:finetuned (ARCH:teacher)"; exit 1 ;;
  esac
done
stkd_init=$(stkd_init_kind "$student_init")  # pretrained | teacher
for _s in $kd_systems; do
  [ -f "$conf_dir/schemes/$_s.yaml" ] || {
    log "kd_systems: no $conf_dir/schemes/$_s.yaml"; exit 1; }
done
for _s in $schemes; do
  for _n in 1 2 3; do
    [ -f "$conf_dir/schemes/${_s}_stage$_n.yaml" ] || {
      log "schemes: no $conf_dir/schemes/${_s}_stage$_n.yaml"; exit 1; }
  done
done
for _s in $finetune_systems; do
  case " best $kd_systems $schemes " in *" $_s "*) ;; *)
    log "finetune_systems: '$_s' is neither best nor one of kd_systems/schemes"; exit 1 ;;
  esac
done
unset _s _n

# ---------------------------------------------------------------------------------------------
# stages

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: fairseq ST data ($src_lang -> $tgt_lang) in $stkd_data"
  mkdir -p "$method_exp/log"
  export_cuts=() export_splits=()
  for c in $train_cuts; do export_cuts+=("$c"); export_splits+=(train); done
  for c in $dev_cuts; do export_cuts+=("$c"); export_splits+=(dev); done
  for spec in $test_sets; do export_cuts+=("${spec#*=}"); export_splits+=("${spec%%=*}"); done
  export_extra=()
  [ -n "$text" ] && export_extra+=(--text $text)
  # mBART trained here (stage 11) learns from the denoising text
  [ -z "$mbart_checkpoint" ] && export_extra+=(--denoising-text)
  text_files=""
  for t in $text; do text_files="$text_files ${t#*=}"; done
  # shellcheck disable=SC2086
  if stage_needed st_export "${export_cuts[*]}$text_files" "$stkd_data" \
      "${export_splits[*]} ${export_extra[*]} $export_opts tgt=$tgt_lang"; then
    # shellcheck disable=SC2086
    python -m speechkd.bin.export_fairseq_st --cuts "${export_cuts[@]}" \
      --split "${export_splits[@]}" --out-dir "$stkd_data" --tgt-lang "$tgt_lang" \
      "${export_extra[@]}" $export_opts --log-file "$method_exp/log/export_fairseq_st.log"
    # shellcheck disable=SC2086
    stage_done st_export "${export_cuts[*]}$text_files" "$stkd_data" \
      "${export_splits[*]} ${export_extra[*]} $export_opts tgt=$tgt_lang"
  fi
fi

stkd_pretrain_w2v2() {  # the tiny wav2vec 2.0 of stage 11
  local audio=$method_exp/data/w2v2_audio conf=$conf_dir/$w2v2_pretrain_config.yaml
  local dir=$stkd_pretrain/w2v2 params="$w2v2_pretrain_opts ngpu=$ngpu" device
  if stage_needed w2v2_audio "$train_cuts $dev_cuts" "$audio" "lang=$src_lang"; then
    # shellcheck disable=SC2086
    python -m speechkd.bin.export_fairseq --no-labels --language "$src_lang" --split train \
      --cuts $train_cuts --out-dir "$audio" --log-file "$method_exp/log/export_w2v2.log"
    # shellcheck disable=SC2086
    python -m speechkd.bin.export_fairseq --no-labels --language "$src_lang" --split dev \
      --cuts ${dev_cuts:-$train_cuts} --out-dir "$audio" \
      --log-file "$method_exp/log/export_w2v2.log"
    stage_done w2v2_audio "$train_cuts $dev_cuts" "$audio" "lang=$src_lang"
  fi
  if stage_needed w2v2_pretrain "$audio $conf" "$stkd_w2v2" "$params"; then
    if [ -f "$stamp_dir/w2v2_pretrain.json" ]; then rm -f "$dir"/checkpoint*.pt; fi
    mkdir -p "$dir/log"
    local tb=()
    tensorboard_importable && tb=(common.tensorboard_logdir="$dir/tensorboard")
    if [ "$ngpu" -gt 0 ]; then
      device="common.cpu=false distributed_training.distributed_world_size=$ngpu"
    else
      device="common.cpu=true distributed_training.distributed_world_size=1"
    fi
    # shellcheck disable=SC2086
    $cuda_cmd "${stkd_gpus[@]}" "$dir/log/train.log" env TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
      fairseq-hydra-train --config-dir "$conf_dir" --config-name "$w2v2_pretrain_config" \
        task.data="$audio" checkpoint.save_dir="$dir" hydra.run.dir="$dir" $device \
        "${tb[@]}" $w2v2_pretrain_opts \
      || { log "wav2vec 2.0 pre-training failed, see $dir/log/train.log"; exit 1; }
    stage_done w2v2_pretrain "$audio $conf" "$stkd_w2v2" "$params"
  fi
}

stkd_pretrain_mbart() {  # the tiny mBART of stage 11 (denoising on the text of stage 10)
  local text_dir=$stkd_data/mbart_text bin=$stkd_pretrain/mbart_bin dir=$stkd_pretrain/mbart
  [ -d "$text_dir" ] || {
    log "no $text_dir: stage 10 writes it when mBART is trained here"; exit 1; }
  # shellcheck disable=SC1090
  . "$mbart_pretrain_conf"  # mbart_preprocess_args, mbart_train_args
  local langs code
  langs=$(cat "$text_dir/langs.txt")
  if stage_needed mbart_bin "$text_dir" "$bin" "${mbart_preprocess_args[*]}"; then
    rm -rf "$bin"
    for code in ${langs//,/ }; do
      stkd_bg $train_cmd "$stkd_pretrain/log/preprocess_$code.log" \
        fairseq-preprocess "${mbart_preprocess_args[@]}" --srcdict "$text_dir/dict.txt" \
          --trainpref "$text_dir/$code/train.spm" --validpref "$text_dir/$code/valid.spm" \
          --destdir "$bin/$code"
    done
    stkd_wait "fairseq-preprocess of the mBART text"
    cp "$text_dir/dict.txt" "$bin/dict.txt"
    stage_done mbart_bin "$text_dir" "$bin" "${mbart_preprocess_args[*]}"
  fi
  local params="${mbart_train_args[*]} $mbart_pretrain_opts ngpu=$ngpu seed=$seed"
  if stage_needed mbart_pretrain "$bin $mbart_pretrain_conf" "$stkd_mbart" "$params"; then
    if [ -f "$stamp_dir/mbart_pretrain.json" ]; then rm -f "$dir"/checkpoint*.pt; fi
    local tb=()
    tensorboard_importable && tb=(--tensorboard-logdir "$dir/tensorboard")
    # shellcheck disable=SC2086
    $cuda_cmd "${stkd_gpus[@]}" "$dir/log/train.log" env TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
      fairseq-train "$bin" "${mbart_train_args[@]}" --langs "$langs" --save-dir "$dir" "${tb[@]}" \
        --seed "$seed" "${stkd_device[@]}" $mbart_pretrain_opts \
      || { log "mBART pre-training failed, see $dir/log/train.log"; exit 1; }
    stage_done mbart_pretrain "$bin $mbart_pretrain_conf" "$stkd_mbart" "$params"
  fi
}

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  if [ -n "$w2v2_checkpoint" ]; then
    log "Stage 11: wav2vec 2.0 given ($w2v2_checkpoint), not pre-trained here"
  else
    log "Stage 11: wav2vec 2.0 pre-training ($w2v2_pretrain_config) on the $src_lang train audio"
    stkd_bg stkd_pretrain_w2v2
  fi
  if [ -n "$mbart_checkpoint" ]; then
    log "Stage 11: mBART given ($mbart_checkpoint), not pre-trained here"
  else
    log "Stage 11: mBART pre-training ($mbart_pretrain_conf) on $stkd_data/mbart_text"
    stkd_bg stkd_pretrain_mbart
  fi
  stkd_wait "stage 11"
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 12 ]; then
  # the fairseq-train flags of every run of stages 12-14, rendered at once
  specs=("teacher|$teacher_arch|$stkd_pretrained_opts|teacher|$(stkd_crit pretrained)")
  for s in $c_systems; do
    init=$(stkd_init_kind "${s#*:}")
    specs+=("$(stkd_c_name "$s")|${s%%:*}|$(stkd_init_opts "$init")|teacher|$(stkd_crit "$init")")
  done
  init_opts=$(stkd_init_opts "$stkd_init")
  kd_crit=$(stkd_crit "$stkd_init")
  for s in $kd_systems; do
    specs+=("$s|$student_arch|$init_opts|$s|$stkd_kd_opts $kd_crit")
  done
  for s in $schemes; do
    # stage 1 starts from the student's source, stages 2 and 3 from the stage before
    crit=$kd_crit
    for n in 1 2 3; do
      specs+=("${s}_stage$n|$student_arch|$init_opts|${s}_stage$n|$stkd_kd_opts $crit")
      crit=$(stkd_crit student)
    done
  done
  # M*: the KD students' architecture, its weights from --finetune-from-model
  [ -z "$finetune_systems" ] ||
    specs+=("finetune|$student_arch|$init_opts|finetune|$(stkd_crit student)")
  stkd_render "${specs[@]}"
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  log "Stage 12: teacher B ($teacher_arch) from $stkd_w2v2 and $stkd_mbart"
  for f in "$stkd_w2v2" "$stkd_mbart"; do
    [ -f "$f" ] || { log "no $f: run stage 11 or give the checkpoint"; exit 1; }
  done
  # shellcheck disable=SC2086
  stkd_train teacher st_teacher "$method_exp/teacher" "$stkd_data $stkd_w2v2 $stkd_mbart" \
    $teacher_opts
  stkd_system_json "$method_exp/teacher" name=teacher role=teacher arch="$teacher_arch" \
    depths="$(stkd_depths "$teacher_arch")" init=pretrained scheme=teacher base= \
    checkpoint="$stkd_teacher"
fi

[ -f "$stkd_teacher" ] || [ "$stop_stage" -lt 13 ] || [ "$stage" -gt 16 ] || {
  log "no teacher $stkd_teacher: run stage 12"; exit 1; }

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  log "Stage 13: non-KD students C: $c_systems"
  for s in $c_systems; do
    name=$(stkd_c_name "$s")
    inputs="$stkd_data $(stkd_init_inputs "${s#*:}")"
    # shellcheck disable=SC2086
    stkd_bg stkd_train "$name" "st_$name" "$method_exp/$name" "$inputs" $student_opts
  done
  stkd_wait "stage 13"
  for s in $c_systems; do
    name=$(stkd_c_name "$s")
    stkd_system_json "$method_exp/$name" name="$name" role=c arch="${s%%:*}" \
      depths="$(stkd_depths "${s%%:*}")" init="$(stkd_init_kind "${s#*:}")" scheme=teacher base= \
      checkpoint="$method_exp/$name/checkpoint_best.pt"
  done
fi

stkd_scheme() {  # stkd_scheme <name>: the three stages: stage 1 from the student's source
  # ($student_init), each later one from the previous one
  local name=$1 n dir prev=""
  local sdir=$method_exp/$(stkd_scheme_dir "$name")
  for n in 1 2 3; do
    dir=$sdir/stage$n
    local extra=() inputs="$stkd_data $stkd_teacher"
    if [ -n "$prev" ]; then
      extra=(--finetune-from-model "$prev")
      inputs="$inputs $prev"
    elif [ "$stkd_init" = pretrained ]; then
      inputs="$inputs $stkd_w2v2 $stkd_mbart"
    fi
    if [ "$n" -lt 3 ]; then
      # shellcheck disable=SC2206
      extra+=($scheme_stage_opts)
    else
      # shellcheck disable=SC2206
      extra+=($student_opts)
    fi
    stkd_train "${name}_stage$n" "st_scheme_${name}_stage$n" "$dir" "$inputs" "${extra[@]}"
    # stages 1 and 2 run a fixed number of epochs: the next stage continues from their end
    prev=$dir/checkpoint_last.pt
    [ "$n" -lt 3 ] || prev=$dir/checkpoint_best.pt
  done
}

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  log "Stage 14: KD students ($student_arch initialised as $student_init): $kd_systems;" \
    "schemes: $schemes"
  kd_inputs="$stkd_data $stkd_teacher"
  [ "$stkd_init" = pretrained ] && kd_inputs="$kd_inputs $stkd_w2v2 $stkd_mbart"
  for s in $kd_systems; do
    # shellcheck disable=SC2086
    stkd_bg stkd_train "$s" "st_$s" "$method_exp/$s" "$kd_inputs" $student_opts
  done
  for s in $schemes; do stkd_bg stkd_scheme "$s"; done
  stkd_wait "KD students and schemes"
  depths=$(stkd_depths "$student_arch")
  for s in $kd_systems; do
    stkd_system_json "$method_exp/$s" name="$s" role=kd arch="$student_arch" depths="$depths" \
      init="$stkd_init" scheme="$s" base= checkpoint="$method_exp/$s/checkpoint_best.pt"
  done
  for s in $schemes; do
    d=$(stkd_scheme_dir "$s")
    stkd_system_json "$method_exp/$d" name="$d" role=scheme arch="$student_arch" \
      depths="$depths" init="$stkd_init" scheme="$s" base= \
      checkpoint="$method_exp/$d/stage3/checkpoint_best.pt"
  done

  if [[ " $finetune_systems " == *" best "* ]] && [ -n "$kd_systems" ]; then
    log "Stage 14: the best KD student on dev (BLEU of the speech input)"
    # shellcheck disable=SC2086
    stkd_decode dev sph $kd_systems
    python - "$method_exp" $kd_systems <<'EOF'
import json
import sys
from pathlib import Path

from speechkd.utils.atomic import atomic_write_text

exp, systems = Path(sys.argv[1]), sys.argv[2:]
bleu = {}
for name in systems:
    scores = json.loads((exp / name / "decode_dev_sph" / "scores-dev.json").read_text())
    bleu[name] = scores["score"]
best = max(systems, key=lambda s: bleu[s])  # the first of equal scores
atomic_write_text(
    exp / "best_kd.json",
    json.dumps({"best": best, "set": "dev", "input": "sph", "bleu": bleu}, indent=2) + "\n",
)
print(f"best KD student on dev: {best} (BLEU[sph] {bleu[best]:.2f})", file=sys.stderr)
EOF
  fi
  if [ -n "$finetune_systems" ]; then
    log "Stage 14: M*, fine-tuned without KD: $finetune_systems"
    mstar=()
    for s in $finetune_systems; do
      if [ "$s" = best ]; then
        [ -n "$kd_systems" ] || { log "finetune_systems best: no kd_systems"; exit 1; }
        base=$(stkd_best)
      elif stkd_is_scheme "$s"; then
        base=$(stkd_scheme_dir "$s")
      else
        base=$s
      fi
      case " ${mstar[*]} " in *" $base "*) continue ;; esac
      mstar+=("$base")
      from=$(stkd_json_field "$method_exp/$base/system.json" checkpoint)
      # shellcheck disable=SC2086
      stkd_bg stkd_train finetune "st_mstar_$base" "$method_exp/mstar_$base" \
        "$stkd_data $from" --finetune-from-model "$from" $finetune_opts
    done
    stkd_wait "M*"
    for base in "${mstar[@]}"; do
      stkd_system_json "$method_exp/mstar_$base" name="mstar_$base" role=finetune \
        arch="$student_arch" depths="$depths" init="$stkd_init" scheme=finetune base="$base" \
        checkpoint="$method_exp/mstar_$base/checkpoint_best.pt"
    done
  fi
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  mapfile -t stkd_all < <(stkd_systems)
  log "Stage 15: translation of the speech and text input of ${stkd_test_names[*]}:" \
    "${stkd_all[*]}"
  for set in "${stkd_test_names[@]}"; do
    stkd_decode "$set" "sph txt" "${stkd_all[@]}"
  done
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  log "Stage 16: parameter table ($param_models) and the report"
  vocab=$param_vocab
  if [ -z "$vocab" ]; then
    vocab=$(stkd_json_field "$stkd_data/export.json" dictionary_size)
  fi
  params_json=$method_exp/params.json
  if stage_needed st_param_table "$conf_dir/arch" "$params_json" "$param_models $vocab"; then
    python -m speechkd.bin.st_param_table --models "$param_models" --vocab-size "$vocab" --json \
      --output "$params_json" > "$method_exp/log/st_param_table.log" 2>&1 \
      || { log "parameter table failed, see $method_exp/log/st_param_table.log"; exit 1; }
    stage_done st_param_table "$conf_dir/arch" "$params_json" "$param_models $vocab"
  fi
  report_args=()
  while read -r sys; do
    report_args+=(--system "$sys=$method_exp/$sys")
  done < <(stkd_systems)
  [ -f "$method_exp/best_kd.json" ] && report_args+=(--best "$method_exp/best_kd.json")
  python -m speechkd.bin.st_kd_report "${report_args[@]}" --sets "${stkd_test_names[@]}" \
    --params "$params_json" --title "$report_title" --results-meta --out "$method_exp/report.md"
fi
