"""sdekit inside diffusers: ``SdekitScheduler`` in pipelines and loops, and ``pipeline_sample`` (tiny random UNets).

Step for step against diffusers' own schedulers on the same UNet, x_T and timesteps (float32,
relative to the state's largest entry): DDIM in ``DDPMPipeline``, DPM-Solver++(2M) in a
class-conditional pipeline-style loop, DDPM's ancestral step with one generator per sample.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import tiny_unet

diffusers = pytest.importorskip("diffusers")

from sdekit.interop.diffusers import STEP_METHODS, SdekitScheduler, pipeline_sample  # noqa: E402

SHAPE = (3, 2, 8, 8)


def settings(config) -> dict:  # type: ignore[no-untyped-def]
    """A scheduler config without diffusers' bookkeeping keys (``_class_name``, ``_use_default_values``, ...)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def loop(unet, scheduler, x_T, generator=None, **unet_kwargs) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """A pipeline's loop: one UNet call per timestep, its output handed to ``scheduler.step``; every state."""
    x, states = x_T, []
    extra = {} if generator is None else {"generator": generator}  # deterministic schedulers take none
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t, **unet_kwargs).sample, t, x, **extra).prev_sample
            states.append(x)
    return states


def test_ddpm_pipeline_takes_the_scheduler_and_matches_ddim() -> None:
    unet = tiny_unet()
    ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=ddim)
    options = {"batch_size": 3, "num_inference_steps": 10, "output_type": "pt"}
    theirs = pipe(generator=torch.Generator().manual_seed(0), **options).images
    pipe.scheduler = SdekitScheduler.from_config(ddim.config, method="ddim")
    mine = pipe(generator=torch.Generator().manual_seed(0), **options).images
    assert isinstance(pipe.scheduler, SdekitScheduler) and mine.shape == SHAPE
    assert relative(mine, theirs) <= 1e-5
    # step for step, the same loop by hand
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    ddim.set_timesteps(10)
    pipe.scheduler.set_timesteps(10)
    assert torch.equal(pipe.scheduler.timesteps, ddim.timesteps)
    for a, b in zip(loop(unet, pipe.scheduler, x_T), loop(unet, ddim, x_T), strict=True):
        assert relative(a, b) <= 1e-5


def test_a_class_conditional_loop_matches_dpm_solver_pp_2m_step_for_step() -> None:
    """diffusers' 2M ends with a first-order step to σ = 0 (x̂₀), which is sdekit's final denoising: so its
    equivalent is dpmpp_2m with lower_order_final=False on its timesteps (with True, sdekit would lower the
    step before as well: 6.6e-6 relative off there, measured)."""
    unet = tiny_unet(num_class_embeds=4)
    labels = torch.tensor([0, 1, 2])
    dpm = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear")
    dpm.set_timesteps(10)
    mine = SdekitScheduler.from_config(dpm.config, method="dpmpp_2m", method_options={"lower_order_final": False})
    mine.set_timesteps(timesteps=dpm.timesteps.tolist())
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    ours, theirs = loop(unet, mine, x_T, class_labels=labels), loop(unet, dpm, x_T, class_labels=labels)
    assert len(ours) == len(theirs) == 10
    for a, b in zip(ours, theirs, strict=True):
        assert relative(a, b) <= 1e-5


def test_the_ancestral_method_is_ddpm_with_one_generator_per_sample() -> None:
    unet = tiny_unet()
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    mine = SdekitScheduler.from_config(ddpm.config, method="ancestral")
    ddpm.set_timesteps(20)
    mine.set_timesteps(20)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))

    def generators() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(10 + i) for i in range(3)]

    for a, b in zip(loop(unet, mine, x_T, generators()), loop(unet, ddpm, x_T, generators()), strict=True):
        assert relative(a, b) <= 1e-5


def test_the_config_round_trips_and_bad_settings_are_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    scheduler = SdekitScheduler(method="ddim", method_options={"eta": 0.5}, timestep_spacing="trailing")
    scheduler.save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["method"] == "ddim" and saved["method_options"] == {"eta": 0.5}
    again = SdekitScheduler.from_pretrained(tmp_path)
    assert settings(again.config) == settings(scheduler.config) and again.method == scheduler.method
    assert settings(SdekitScheduler.from_config(scheduler.config).config) == settings(scheduler.config)
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999, 749, 499, 249]  # diffusers' "trailing"
    with pytest.raises(ValueError, match="method 'heun'; valid: " + ", ".join(STEP_METHODS)):
        SdekitScheduler(method="heun")  # two network calls a step: a pipeline gives one
    with pytest.raises(ValueError, match="method 'adaptive'"):
        SdekitScheduler(method="adaptive")
    with pytest.raises(ValueError, match="eta must be a number in"):
        SdekitScheduler(method="ddim", method_options={"eta": 2.0})
    with pytest.raises(ValueError, match="timesteps must be a non-empty, strictly decreasing"):
        scheduler.set_timesteps(timesteps=[10, 20])
    with pytest.raises(ValueError, match="num_inference_steps=2000 exceeds num_train_timesteps=1000"):
        scheduler.set_timesteps(2000)
    with pytest.warns(UserWarning, match="does not clip"):
        SdekitScheduler.from_config(diffusers.DDPMScheduler().config)  # DDPMScheduler clips by default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SdekitScheduler.from_config(diffusers.DDPMScheduler(clip_sample=False).config)


def test_pipeline_sample_runs_any_method_with_per_sample_seeds() -> None:
    unet = tiny_unet()
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(clip_sample=False))
    three = pipeline_sample(pipe, 3, method="adaptive", generator=[1, 2, 3], rtol=0.05)
    assert three.shape == SHAPE and float(three.min()) >= 0 and float(three.max()) <= 1
    alone = pipeline_sample(pipe, 1, method="adaptive", generator=[2], rtol=0.05)
    torch.testing.assert_close(alone, three[1:2], rtol=1e-5, atol=1e-5)  # a sample depends on its own seed only
    flow = pipeline_sample(pipe, 2, method="dpmpp_2m", steps=8, generator=torch.Generator().manual_seed(0))
    assert flow.shape == (2, *SHAPE[1:])
    with pytest.raises(ValueError, match="method 'dopri9'"):
        pipeline_sample(pipe, 1, method="dopri9")


def test_an_img2img_start_part_way_begins_multistep_methods_at_first_order() -> None:
    """Pipelines that edit an image step from ``timesteps[k:]``: a fresh run there, as diffusers' 2M starts
    (``set_begin_index``), not a second-order step on a history the method never had."""
    unet = tiny_unet()
    dpm = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear")
    dpm.set_timesteps(10)
    dpm.set_begin_index(3)
    mine = SdekitScheduler.from_config(dpm.config, method="dpmpp_2m", method_options={"lower_order_final": False})
    mine.set_timesteps(timesteps=dpm.timesteps.tolist())
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    start = mine.add_noise(x, torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)), dpm.timesteps[3:4])
    ours, theirs = start, start
    with torch.no_grad():
        for t in dpm.timesteps[3:]:
            ours = mine.step(unet(ours, t).sample, t, ours).prev_sample
            theirs = dpm.step(unet(theirs, t).sample, t, theirs).prev_sample
            assert relative(ours, theirs) <= 1e-5


def test_add_noise_pred_original_sample_and_v_prediction_agree_with_diffusers() -> None:
    unet = tiny_unet()
    ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                   prediction_type="v_prediction")  # fmt: skip
    mine = SdekitScheduler.from_config(ddim.config, method="ddim")
    assert mine.config["prediction_type"] == "v_prediction"
    x0, noise = (torch.randn(SHAPE, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    timesteps = torch.tensor([999, 500, 3])
    torch.testing.assert_close(mine.add_noise(x0, noise, timesteps), ddim.add_noise(x0, noise, timesteps))
    ddim.set_timesteps(8)
    mine.set_timesteps(8)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    ours, theirs = x, x
    with torch.no_grad():
        for t in ddim.timesteps:
            a, b = mine.step(unet(ours, t).sample, t, ours), ddim.step(unet(theirs, t).sample, t, theirs)
            assert relative(a.pred_original_sample, b.pred_original_sample) <= 1e-5
            assert relative(a.prev_sample, b.prev_sample) <= 1e-5
            ours, theirs = a.prev_sample, b.prev_sample


def test_a_scheduler_used_twice_gives_the_same_run_and_refuses_what_it_would_ignore() -> None:
    unet = tiny_unet()
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=SdekitScheduler(method="dpmpp_2m"))
    options = {"batch_size": 2, "num_inference_steps": 6, "output_type": "pt"}
    first = pipe(generator=torch.Generator().manual_seed(0), **options).images
    again = pipe(generator=torch.Generator().manual_seed(0), **options).images  # no history carried over
    assert torch.equal(first, again)
    scheduler = SdekitScheduler(method="ancestral")
    scheduler.set_timesteps(4)
    x, out = torch.zeros(SHAPE), torch.zeros(SHAPE)
    with pytest.raises(TypeError, match="int seeds would be seeded afresh at every step"):
        scheduler.step(out, scheduler.timesteps[0], x, generator=[1, 2, 3])
    with pytest.raises(ValueError, match=r"step\(eta=1.0\) differs from the scheduler's method 'ancestral'"):
        scheduler.step(out, scheduler.timesteps[0], x, eta=1.0)
    with pytest.raises(ValueError, match="use_clipped_model_output=True"):
        scheduler.step(out, scheduler.timesteps[0], x, use_clipped_model_output=True)
    with pytest.raises(ValueError, match="steps_offset=1 puts the timesteps past the last trained one"):
        SdekitScheduler(timestep_spacing="leading", steps_offset=1).set_timesteps(1000)
    with pytest.raises(ValueError, match="variance_type='learned_range'"):
        SdekitScheduler.from_config(diffusers.DDPMScheduler(clip_sample=False, variance_type="learned_range").config)
    with pytest.warns(UserWarning, match="set_alpha_to_one=False"):
        SdekitScheduler.from_config(diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False).config)
    latent = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(clip_sample=False))
    latent.vae = torch.nn.Identity()  # a latent pipeline's decoder
    with pytest.raises(ValueError, match="pipeline has a vae"):
        pipeline_sample(latent, 1)


@pytest.mark.parametrize(
    ("spacing", "offset", "steps"),
    [("leading", 0, 10), ("leading", 1, 7), ("trailing", 0, 6), ("linspace", 0, 9), ("linspace", 0, 1000)],
)
def test_timestep_spacings_are_diffusers_own(spacing: str, offset: int, steps: int) -> None:
    ddim = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=offset, clip_sample=False)
    mine = SdekitScheduler.from_config(ddim.config)
    ddim.set_timesteps(steps)
    mine.set_timesteps(steps)
    assert torch.equal(mine.timesteps, ddim.timesteps)


@pytest.mark.parametrize(("order", "variant"), [(2, "bh2"), (3, "bh2"), (2, "bh1"), (1, "bh2")])
def test_unipc_matches_diffusers_unipc_multistep_step_for_step(order: int, variant: str) -> None:
    """UniPC's predictor and its free corrector: diffusers' UniPCMultistepScheduler ends with its last step to
    σ = 0, which is sdekit's final denoising (x̂₀ at the uncorrected last state), and lowers the order over the
    last steps counting that one, as sdekit's unipc does. With bh1 diffusers' own last step is NaN (B(h) = h is
    infinite at σ = 0, and it divides by it): the states before it are compared, sdekit's last is finite."""
    unet = tiny_unet(num_class_embeds=4)
    labels = torch.tensor([3, 1, 0])
    unipc = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", solver_order=order,
                                              solver_type=variant)  # fmt: skip
    unipc.set_timesteps(12)
    mine = SdekitScheduler.from_config(unipc.config, method="unipc", method_options={"order": order,
                                                                                     "variant": variant})  # fmt: skip
    mine.set_timesteps(timesteps=unipc.timesteps.tolist())
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    ours, theirs = loop(unet, mine, x_T, class_labels=labels), loop(unet, unipc, x_T, class_labels=labels)
    assert len(ours) == len(theirs) == 12
    if variant == "bh1":
        assert bool(theirs[-1].isnan().all()) and bool(ours[-1].isfinite().all())
        ours, theirs = ours[:-1], theirs[:-1]
    for a, b in zip(ours, theirs, strict=True):
        assert relative(a, b) <= 1e-5
