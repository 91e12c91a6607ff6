# Tiny mBART for egs/mini (joint ST KD): fairseq's multilingual_denoising task (mBART's
# pre-training) on the mini English/German text, with the mBART encoder/decoder dimensions of
# conf/st_kd/arch/tiny_teacher.yaml (dim 64, FFN 256, 4 heads, 4 + 4 layers, pre-LN, layernorm
# on embeddings, GELU), so the tiny teacher loads it with --load-pretrained-mbart-from.
# Source this file, then (data from `python -m speechkd.bin.export_fairseq_st ... --denoising-text
# --out-dir $st`; the dictionary rows line up with $st/dict.txt, see
# speechkd/data/fairseq_st_export.py):
#
#   for code in $(tr , ' ' < $st/mbart_text/langs.txt); do
#     fairseq-preprocess "${mbart_preprocess_args[@]}" --srcdict $st/mbart_text/dict.txt \
#       --trainpref $st/mbart_text/$code/train.spm --validpref $st/mbart_text/$code/valid.spm \
#       --destdir $bin/$code
#   done
#   cp $st/mbart_text/dict.txt $bin/dict.txt
#   OMP_NUM_THREADS=1 fairseq-train $bin "${mbart_train_args[@]}" \
#     --langs $(cat $st/mbart_text/langs.txt) --save-dir $exp/mbart_tiny
#
# The checkpoint for the ST models is $exp/mbart_tiny/checkpoint_last.pt. Noising as in mBART:
# 35% of the tokens masked in Poisson(3.5) spans (one <mask> per span), sentence order permuted,
# the language token [code] closes each block. fairseq 0.12's multilingual_denoising hands the
# --bpe *name* to build_bpe, so whole-word masking cannot be switched on: spans are counted in
# sentencepiece pieces.
# Size, measured on the mini text (1000 pieces; 74k English + 18k German lines): 500 updates of
# <= 2048 tokens (about 0.4 epoch), 0.55-0.9 s per update on 2 busy CPU cores with one thread
# (two OpenMP threads on a loaded machine were ~10x slower): 5.4 min in all; loss (log2) 9.96 after
# 5 updates, valid loss 5.98 after 500. fairseq-preprocess of both languages: about 40 s.
# Resuming from an existing checkpoint_last.pt needs TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (torch >=
# 2.6 loads weights_only by default; fairseq checkpoints are pickles - only for own/trusted files).

mbart_preprocess_args=(
  --only-source
  --workers 2
)

mbart_train_args=(
  --task multilingual_denoising
  --add-lang-token
  --multilang-sampling-alpha 0.7
  --arch mbart_base
  --encoder-layers 4
  --decoder-layers 4
  --encoder-embed-dim 64
  --decoder-embed-dim 64
  --encoder-ffn-embed-dim 256
  --decoder-ffn-embed-dim 256
  --encoder-attention-heads 4
  --decoder-attention-heads 4
  --encoder-normalize-before
  --decoder-normalize-before
  --layernorm-embedding
  --share-all-embeddings
  --activation-fn gelu
  --mask 0.35
  --mask-random 0.0
  --mask-length span-poisson
  --poisson-lambda 3.5
  --replace-length 1
  --permute-sentences 1
  --rotate 0.0
  --insert 0.0
  --tokens-per-sample 128
  --sample-break-mode complete
  --criterion cross_entropy
  --optimizer adam
  --adam-betas "(0.9, 0.98)"
  --adam-eps 1e-6
  --weight-decay 0.01
  --clip-norm 1.0
  --lr 2e-3
  --lr-scheduler polynomial_decay
  --warmup-updates 50
  --total-num-update 500
  --max-update 500
  --dropout 0.1
  --attention-dropout 0.1
  --max-tokens 2048
  --num-workers 0
  --seed 1
  --log-format simple
  --log-interval 10
  --validate-interval-updates 100
  --save-interval-updates 100
  --keep-interval-updates 1
  --no-epoch-checkpoints
  --cpu
)
