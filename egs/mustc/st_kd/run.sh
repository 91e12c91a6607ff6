#!/usr/bin/env bash
# Joint speech/text ST KD (Nayem et al., "Knowledge Distillation on Joint Task End-to-End Speech
# Translation") on MuST-C v2 + CoVoST 2 + Europarl-ST v1.1 en->de, tested on MuST-C tst-COMMON:
# the 12-12-12 wav2vec2-large + mBART teacher B, its 6-6-6 / 8-8-2 students without KD (C), the KD
# loss ablation, the Module/Task/All schemes and M* (local/recipes/st_kd.sh).
#   ./run.sh --mustc-dir /data/MUSTC_v2.0 --covost-dir /data/cv-corpus-4/en \
#     --europarl-dir /data/Europarl-ST/v1.1 --w2v2-checkpoint /models/wav2vec2_vox_960h_new.pt \
#     --mbart-dir /models/mbart.cc25 --trust-fairseq-checkpoint true --ngpu 8   # everything
#   ./run.sh ... --stage 0 --stop-stage 10      # data: manifests and the fairseq export
#   ./run.sh ... --stage 14 --stop-stage 14 --kd-systems "kd_res" --schemes ""   # one student
#   ./run.sh ... --stage 14 --student-init finetuned   # KD students from the fine-tuned teacher
# Data (stage 0, local/prepare_{mustc,covost2,europarl_st}.sh; each corpus of $corpora):
#   MuST-C v2.0 en-de train and the test sets ($test_splits), CoVoST 2 en->de train (the Common
#   Voice 4 English clips), Europarl-ST v1.1 en->de train (m4a converted once to 16 kHz flac with
#   ffmpeg, --europarl-convert false reads them directly). Stage 10 exports them together:
#   training clips shorter than 50 ms or longer than 30 s are dropped, 1% of train (by cut-id
#   hash) is held out as the validation set, tst-COMMON is the test set (Sec. 4.1).
# Models: --w2v2-checkpoint is a pre-trained wav2vec2-large (24 layers; the teacher keeps the first
# 12, normalised input), --mbart-dir the mbart.cc25 release (model.pt, sentence.bpe.model,
# dict.txt: its sentencepiece model and dictionary are the ST vocabulary). Both are fairseq pickles
# and are read only with --trust-fairseq-checkpoint true.
# Initialisation (the paper's, Sec. 2.2 and 5.1): every student keeps the maximally spaced layers
# of its source. By default (--student-init pretrained) the KD students, the first stage of the
# Module/Task/All schemes and the C:pre-trained systems are pruned from the pre-trained
# wav2vec2-large (its first 12 layers, as B) and mbart.cc25: Table 3 finds C:pre-trained ahead of
# C:fine-tuned in BLEU[sph], and the Task scheme leaves the S2T loss out of stages 1-2 because the
# decoder is still mBART's. --student-init finetuned prunes them from the fine-tuned teacher B
# instead; student_6_6_6:teacher of --c-systems is always trained as Table 3's C:fine-tuned row
# (c_finetuned in RESULTS.json).
set -euo pipefail
RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")  # commands.log

stage=0
stop_stage=100
nj=4                    # jobs of the data preparation
corpora="mustc covost2 europarl_st"
mustc_dir=              # MuST-C v2.0: <mustc_dir>/en-de/data/<split>/{wav,txt}
covost_dir=             # Common Voice 4 English locale dir (clips/, validated.tsv) holding
                        # covost_v2.en_de.tsv
europarl_dir=           # Europarl-ST v1.1: <europarl_dir>/en/{audios,de/<split>}
europarl_audio_ext=m4a
europarl_convert=true   # convert the m4a audio to flac once (ffmpeg)
test_splits="tst-COMMON"  # MuST-C test sets ("tst-COMMON tst-HE")
w2v2_checkpoint=        # pre-trained wav2vec2-large (fairseq)
mbart_dir=              # mbart.cc25: model.pt, sentence.bpe.model, dict.txt
# mbart.cc25's --langs, in order (its dictionary rows of the language tokens)
mbart_langs=ar_AR,cs_CZ,de_DE,en_XX,es_XX,et_EE,fi_FI,fr_XX,gu_IN,hi_IN,it_IT,ja_XX,kk_KZ,ko_KR
mbart_langs=$mbart_langs,lt_LT,lv_LV,my_MM,ne_NP,nl_XX,ro_RO,ru_RU,si_LK,tr_TR,vi_VN,zh_CN
trust_fairseq_checkpoint=false
spm_vocab_size=8000     # without --mbart-dir only: a sentencepiece model trained on the ST text
data=data
expdir=exp
# systems (local/recipes/st_kd.sh): C as ARCH:INIT (Table 3; INIT pretrained or teacher, the
# fine-tuned B), the KD scheme files (Table 4), the training schemes (Table 5), M* ("best": the KD
# student with the best dev BLEU[sph])
c_systems="student_6_6_6:teacher student_6_6_6:pretrained student_8_8_2:pretrained"
kd_systems="kd_all kd_res_dec kd_res_enc kd_feat kd_rel kd_res kd_res_enc_feat kd_res_enc_avgfeat
  kd_res_feat"
schemes="module task all"
finetune_systems="best module task all"
student_arch=student_6_6_6   # the KD students
student_init=pretrained      # KD students and schemes: pretrained (wav2vec2 + mBART) or finetuned
# Sec. 4.2: Adam, inverse_sqrt with 5k warm-up, at most 3 clips a batch, an update every 4
# batches, validation (patience 3) every $validate_updates updates
train_opts="--max-tokens 1440000 --batch-size 3 --update-freq 4 --warmup-updates 5000"
validate_updates=5000
teacher_opts=           # e.g. "--max-update 200000"
student_opts=
scheme_stage_opts=
finetune_opts=
ddsd_warmup_updates=    # empty: the scheme files' 5000
decode_opts="--beam 5 --max-len-b 200 --batch-size 16"
ngpu=1
seed=1
parallel=1              # trainings submitted at once (e.g. one per Slurm GPU job)
force=false
results=RESULTS.md

help_message="Usage: $0 --mustc-dir DIR --covost-dir DIR --europarl-dir DIR --w2v2-checkpoint F
  --mbart-dir DIR --trust-fairseq-checkpoint true [options]"
. "$RECIPE_DIR/local/parse_options.sh" || exit 1
for _dir in mustc_dir covost_dir europarl_dir mbart_dir w2v2_checkpoint; do
  # relative to where run.sh was called from
  if [ -n "${!_dir}" ]; then printf -v "$_dir" '%s' "$(readlink -f "${!_dir}")"; fi
done
unset _dir
cd "$RECIPE_DIR"
. ./path.sh
. ./cmd.sh
. ./local/stage_lib.sh
stamp_dir=$expdir/.stages
mkdir -p "$expdir/log"
echo "$RUN_COMMAND" >> "$expdir/commands.log"

manifests=$data/manifests
train_cuts=
for corpus in $corpora; do
  case $corpus in
    mustc|covost2|europarl_st) ;;
    *) log "--corpora: unknown corpus '$corpus' (mustc, covost2, europarl_st)"; exit 1 ;;
  esac
  train_cuts="$train_cuts $manifests/${corpus}_cuts_en-de_train.jsonl.gz"
done
case " $corpora " in
  *" mustc "*) ;;
  *) log "--corpora must include mustc (the test sets)"; exit 1 ;;
esac

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: manifests of $corpora (en->de)"
  for corpus in $corpora; do
    out=$manifests/${corpus}_cuts_en-de_train.jsonl.gz
    case $corpus in
      mustc)
        [ -n "$mustc_dir" ] || { log "give --mustc-dir"; exit 1; }
        splits=train
        for s in $test_splits; do splits="$splits,$s"; done
        outs=$out
        for s in $test_splits; do outs="$outs $manifests/mustc_cuts_en-de_$s.jsonl.gz"; done
        if stage_needed prepare_mustc "$mustc_dir/en-de/data" "$outs" "splits=$splits"; then
          local/prepare_mustc.sh --corpus-dir "$mustc_dir" --output-dir "$manifests" \
            --tgt-lang de --splits "$splits" --nj "$nj" 2>&1 | tee "$expdir/log/prepare_mustc.log"
          stage_done prepare_mustc "$mustc_dir/en-de/data" "$outs" "splits=$splits"
        fi
        ;;
      covost2)
        [ -n "$covost_dir" ] || {
          log "give --covost-dir (or leave covost2 out of --corpora)"; exit 1; }
        tsvs="$covost_dir/covost_v2.en_de.tsv"
        [ -f "$covost_dir/validated.tsv" ] && tsvs="$tsvs $covost_dir/validated.tsv"
        if stage_needed prepare_covost2 "$tsvs" "$out" "splits=train"; then
          local/prepare_covost2.sh --corpus-dir "$covost_dir" --output-dir "$manifests" \
            --src-lang en --tgt-lang de --splits train --nj "$nj" \
            2>&1 | tee "$expdir/log/prepare_covost2.log"
          stage_done prepare_covost2 "$tsvs" "$out" "splits=train"
        fi
        ;;
      europarl_st)
        [ -n "$europarl_dir" ] || {
          log "give --europarl-dir (or leave europarl_st out of --corpora)"; exit 1; }
        convert=()
        [ "$europarl_convert" = true ] && convert=(--convert-to "$data/europarl_st_flac")
        params="splits=train ext=$europarl_audio_ext convert=$europarl_convert"
        if stage_needed prepare_europarl_st "$europarl_dir/en/de/train" "$out" "$params"; then
          local/prepare_europarl_st.sh --corpus-dir "$europarl_dir" --output-dir "$manifests" \
            --src-lang en --tgt-lang de --splits train --audio-ext "$europarl_audio_ext" \
            "${convert[@]}" --nj "$nj" 2>&1 | tee "$expdir/log/prepare_europarl_st.log"
          stage_done prepare_europarl_st "$europarl_dir/en/de/train" "$out" "$params"
        fi
        ;;
    esac
  done
fi

# the variables of the shared method stages
dev_cuts=               # 1% of train held out (stage 10)
test_sets=
for s in $test_splits; do test_sets="$test_sets $s=$manifests/mustc_cuts_en-de_$s.jsonl.gz"; done
src_lang=en
tgt_lang=de
method_exp=$expdir/st_kd
teacher_arch=teacher_12_12_12
if [ -n "$mbart_dir" ]; then
  for f in model.pt sentence.bpe.model dict.txt; do
    [ -f "$mbart_dir/$f" ] || { log "--mbart-dir $mbart_dir has no $f (mbart.cc25)"; exit 1; }
  done
  mbart_checkpoint=$mbart_dir/model.pt
  export_opts="--spm-model $mbart_dir/sentence.bpe.model --spm-dict $mbart_dir/dict.txt
    --mbart-langs $mbart_langs"
else
  mbart_checkpoint=
  export_opts="--spm-vocab-size $spm_vocab_size"
fi
if [ "$stop_stage" -ge 11 ] && [ "$stage" -le 14 ] && \
    { [ -z "$w2v2_checkpoint" ] || [ -z "$mbart_checkpoint" ]; }; then
  log "stages 11-16 start from wav2vec2-large and mbart.cc25: give --w2v2-checkpoint and" \
    "--mbart-dir (the tiny pre-training of stage 11 is the mini recipe's)"
  exit 1
fi
train_opts="$train_opts --validate-interval-updates $validate_updates
  --save-interval-updates $validate_updates --keep-interval-updates 1 --log-interval 100
  --ddp-backend legacy_ddp"
param_models=teacher_12_12_12,student_6_6_6,student_8_8_2
report_title="Joint ST KD: MuST-C v2 + CoVoST 2 + Europarl-ST en->de, MuST-C ${test_splits// /, }"

if [ $stop_stage -ge 10 ]; then
  . ./local/recipes/st_kd.sh
fi

if [ $stage -le 100 ] && [ $stop_stage -ge 100 ]; then
  log "Stage 100: $results"
  python -m speechkd.bin.write_results --exp-dir "$expdir" --out "$results" \
    --title "Joint speech/text ST KD on MuST-C v2 + CoVoST 2 + Europarl-ST (en->de)" \
    --commands-file "$expdir/commands.log" --section "$method_exp/report.md"
fi
log "done"
