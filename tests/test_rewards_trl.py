"""ponder's math reward inside TRL's GRPOTrainer, on CPU, with a tiny random model built here.

The vocabulary is a few digits, so the random policy's completions are numbers: some equal the
gold answer, some do not, and the rewards TRL logs must be exactly ponder's scores of the
completions it sampled.
"""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from ponder.rewards import MathReward  # noqa: E402

VOCAB = ["<pad>", "<eos>", "1", "2", "3", "+", "="]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                                eos_token="<eos>")


def tiny_model(tokenizer):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return transformers.LlamaForCausalLM(config)


class Recording(MathReward):
    """The math reward, keeping what it was asked and what it answered."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def score(self, prompts, completions, completion_ids, columns):
        values = super().score(prompts, completions, completion_ids, columns)
        self.calls.append((list(completions), list(columns["answer"]), values))
        return values


def last_number_equals(text, gold):
    """The reward by hand: ponder reads the last number of a text with no stated answer."""
    numbers = [t for t in text.replace("+", " ").replace("=", " ").split() if t.isdigit()]
    return float(bool(numbers) and int(numbers[-1]) == int(gold))


# TRL asks transformers a deprecated question while it generates; nothing of ponder's warns
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_grpo_trainer_logs_ponders_math_rewards(tmp_path):
    tokenizer = tiny_tokenizer()
    rows = [{"prompt": "1 + 1 =", "answer": "2"}, {"prompt": "1 + 2 =", "answer": "3"},
            {"prompt": "2 + 1 =", "answer": "3"}, {"prompt": "2 = 1 + 1", "answer": "1"}]
    reward = Recording()
    args = trl.GRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
        num_generations=4, max_completion_length=4, learning_rate=1e-3, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True, bf16=False, seed=0, beta=0.0,
        disable_tqdm=True, dataloader_num_workers=0, activation_checkpointing=False)
    trainer = trl.GRPOTrainer(model=tiny_model(tokenizer), reward_funcs=[reward], args=args,
                              train_dataset=datasets.Dataset.from_list(rows),
                              processing_class=tokenizer)
    trainer.train()

    logged = [h["rewards/math_correctness/mean"] for h in trainer.state.log_history
              if "rewards/math_correctness/mean" in h]
    assert len(reward.calls) == len(logged) == 2
    seen = set()
    for (completions, golds, values), mean in zip(reward.calls, logged, strict=True):
        assert len(values) == 4
        assert values == [last_number_equals(c, g) for c, g in zip(completions, golds,
                                                                   strict=True)]
        assert mean == pytest.approx(sum(values) / len(values))
        seen.update(values)
    assert trainer.state.global_step == 2
