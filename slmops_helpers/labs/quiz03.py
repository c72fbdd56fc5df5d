"""Lab 03's quiz: what QLoRA quantizes, what Olive's run changes, full fine-tuning's memory,
early stopping, checkpointing and merging."""

from __future__ import annotations

from .quiz import Choice, Numeric


class Quiz03(Choice):
    """A lab 03 quiz question; ``solution()`` reads the answer from the lab's source notebook."""

    notebook = "03_fine_tuning.ipynb"


class Quiz03Numeric(Numeric):
    notebook = "03_fine_tuning.ipynb"


class QLoRABits(Quiz03):
    name, var, title = "quiz1", "quiz1_answer", "What QLoRA stores in 4 bits"
    prompt = "What does QLoRA store in 4 bits (NF4), and what does it keep in higher precision (section 3.2)?"
    options = {
        "a": "Everything: the base, the adapter and the optimizer state are 4-bit.",
        "b": "The frozen base's linear weights are 4-bit; the adapter, the embedding and the norms are not.",
        "c": "Only the adapter is 4-bit; the base stays in fp32.",
        "d": "The activations are 4-bit; the weights stay in fp32.",
    }
    answer = "b"
    why_not = {
        "a": "the adapter is what trains: its weights and gradients need more than 4 bits.",
        "c": "the adapter is tiny; the memory QLoRA saves is the base's. Which part is frozen?",
        "d": "QLoRA quantizes stored weights, not activations; section 3.4 counts activations separately.",
    }
    hint_text = "Which part of the model is frozen and large, and which part trains?"
    explanation = (
        "The frozen linear weights take a quarter of a 16-bit base's memory in NF4; the adapter trains in higher "
        "precision, and the embedding and norms stay unquantized (so against an fp32 base the saving is less than 8×)."
    )


class OliveAndThePrompt(Quiz03):
    name, var, title = "quiz2", "quiz2_answer", "What changes when Olive runs the same fine-tuning"
    prompt = (
        "Section 3.7 prints the `olive finetune` command for the notebook's LoRA run. Run as printed, which "
        "difference from the notebook's own training changes what the model learns?"
    )
    options = {
        "a": "Olive trains with another optimizer, so LoRA's rank means something else.",
        "b": "Olive's text template trains on the whole formatted text, prompt included, unless configured "
        "otherwise; the notebook masks the prompt and learns only the answer.",
        "c": "Olive cannot train adapters, only full models.",
        "d": "Olive needs a GPU, so the run would not happen on this machine.",
    }
    answer = "b"
    why_not = {
        "a": "the rank is the adapter's shape, whatever optimizer trains it; look at which tokens carry the loss.",
        "c": "the command asks for --method lora; look at which tokens the loss is computed on.",
        "d": "that changes where it runs, not what it learns; look at the text the loss sees.",
    }
    hint_text = "Compare what each run computes its loss on: which tokens of a training example?"
    explanation = (
        "A loss on the prompt spends capacity on predicting tickets the model is given anyway; masking it "
        "(labels −100 on the prompt) trains only what the model must write."
    )


class FullFineTuneMemory(Quiz03Numeric):
    name, var, title = "quiz3", "quiz3_answer", "Full fine-tuning's memory, before activations"
    prompt = (
        "Full fine-tuning with AdamW of a 134,515,008-parameter model in fp32: how many MiB do the weights, "
        "their gradients and AdamW's moments take together (no activations)?"
    )
    hint_text = "Count the fp32 numbers kept per trainable weight during a step (section 3.2)."
    explanation = "4 numbers of 4 bytes per weight (weight, gradient, two moments): 16 bytes × 134.5 M ≈ 2,052 MiB."
    look_at = "Per weight: the weight, a gradient and AdamW's two moments, 4 bytes each; then divide by 2**20."

    def expected(self) -> float:
        return 134_515_008 * 16 / 2**20

    def slips(self) -> dict[str, float]:
        n = 134_515_008
        return {
            "that is the weights alone.": n * 4 / 2**20,
            "that is weights and gradients; AdamW keeps two moments per weight too.": n * 8 / 2**20,
            "that counts one AdamW moment; it keeps two.": n * 12 / 2**20,
            "that is in MB (10^6 bytes); the course counts MiB.": n * 16 / 1e6,
        }


class EarlyStopping(Quiz03Numeric):
    name, var, title = "quiz4", "quiz4_answer", "Which weights early stopping keeps"
    prompt = (
        "Validation losses at evaluations 0, 1, 2, …: 2.0, 1.7, 1.6, 1.65, 1.62, 1.7, 1.5. With patience 2 "
        "(stop after 2 evaluations without a new best) and the best weights restored, which evaluation's "
        "weights does the run end with? Give its index (0-based)."
    )
    hint_text = "Walk the list: keep the best so far and count evaluations without a new best; stop at 2."
    explanation = (
        "The best is 1.6 at evaluation 2; evaluations 3 and 4 bring no new best, so the run stops at 4 and "
        "restores evaluation 2. It never sees the 1.5: patience is a bet."
    )
    look_at = "Training stops when the count of evaluations without improvement reaches the patience."

    def expected(self) -> float:
        return 2

    def slips(self) -> dict[str, float]:
        return {
            "that is where the run stops; it then restores the best weights seen so far.": 4,
            "the run stopped before it could see that evaluation.": 6,
        }


class Checkpointing(Quiz03):
    name, var, title = "quiz5", "quiz5_answer", "What gradient checkpointing trades"
    prompt = "Section 3.4 turns gradient checkpointing on. What does it trade?"
    options = {
        "a": "Less weight memory for lower quality.",
        "b": "Less activation memory for more compute: activations are recomputed in the backward pass.",
        "c": "Fewer optimizer moments for slower convergence.",
        "d": "Smaller checkpoint files on disk for longer saves.",
    }
    answer = "b"
    why_not = {
        "a": "the weights are untouched and the result is the same; ask what the backward pass needs kept.",
        "c": "the optimizer is unchanged; ask what the backward pass needs kept.",
        "d": "despite the name it is not about saved files; ask what the backward pass needs kept.",
    }
    hint_text = "What does the backward pass need from the forward pass, and what if it is not kept?"
    explanation = (
        "It keeps activations only at a few points and recomputes the rest: memory grows slower "
        "with batch × length, each step takes longer."
    )


class Merge(Quiz03):
    name, var, title = "quiz6", "quiz6_answer", "What merging an adapter gives"
    prompt = "After `W' = W + (α/r)·B·A` (section 3.6), what do you have?"
    options = {
        "a": "A plain model with no extra latency, equal to base + adapter within float32's own noise.",
        "b": "A bit-for-bit identical model to base + adapter.",
        "c": "A smaller file than the base model.",
        "d": "A model whose adapter can still be switched off at run time.",
    }
    answer = "a"
    why_not = {
        "b": "adding in a different order changes the last bits in float32; section 3.6 checks it with a bound.",
        "c": "W' has the same shape as W; the adapter's matrices are folded in, not removed from the base.",
        "d": "once folded into W, the update is no longer separate; that is what switching needs.",
    }
    hint_text = "Compare the shapes of W and W', and think about float32 rounding."
    explanation = "Same shapes, one matrix per layer, no extra path at inference; exact only up to float32 rounding."


class UntunedFloor(Quiz03):
    name, var, title = "quiz7", "quiz7_answer", "The floor before fine-tuning"
    prompt = "Section 3.1 scores the untuned model on held-out tickets before any training. Why?"
    options = {
        "a": "It is the floor every method must clearly beat, on the same tickets.",
        "b": "To warm up the CPU.",
        "c": "To choose the LoRA rank.",
        "d": "The untuned model's answers become the training data.",
    }
    answer = "a"
    why_not = {
        "b": "no measurement needs a warm-up this long; what does a score before training give you?",
        "c": "the rank is chosen by the grid of 3.5; what does a score before training give you?",
        "d": "the training data are the references; what does a score before training give you?",
    }
    hint_text = "Without it, how would you know that a fine-tuned score is an improvement?"
    explanation = (
        "A method that does not clearly beat the untuned model on the same held-out tickets has not earned its cost."
    )


class AdapterSwitching(Quiz03):
    name, var, title = "quiz8", "quiz8_answer", "What adapters allow at run time"
    prompt = "Section 3.6 switches adapters at run time before merging one. What do unmerged adapters allow?"
    options = {
        "a": "Many tasks or customers on one base model: load the base once, switch a few MiB of adapter per request.",
        "b": "A faster forward pass than the merged model.",
        "c": "Training without gradients.",
        "d": "A smaller base model.",
    }
    answer = "a"
    why_not = {
        "b": "the adapter path adds work to each layer; merging is what removes it. What does keeping them apart buy?",
        "c": "adapters are trained with gradients; what does keeping them apart from the base buy at run time?",
        "d": "the base is unchanged; what does keeping adapters apart from it buy at run time?",
    }
    hint_text = "Compare the size of an adapter with the size of the base."
    explanation = "One base in memory, one small adapter per customer: that is the economics section 3.9 names."


QUIZ = [
    QLoRABits,
    OliveAndThePrompt,
    FullFineTuneMemory,
    EarlyStopping,
    Checkpointing,
    Merge,
    UntunedFloor,
    AdapterSwitching,
]
