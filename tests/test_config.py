"""JobConfig, JobPriority and the backoff rule."""

import math
from datetime import timedelta

import attrs
import pytest

from pulse_trio import JobConfig, JobPriority


class TestJobPriority:
    def test_priorities_compare_in_order(self) -> None:
        assert JobPriority.CRITICAL > JobPriority.HIGH
        assert JobPriority.HIGH > JobPriority.NORMAL
        assert JobPriority.NORMAL > JobPriority.LOW

    def test_sorted_priorities(self) -> None:
        shuffled = [JobPriority.NORMAL, JobPriority.CRITICAL, JobPriority.LOW]
        shuffled.append(JobPriority.HIGH)
        assert sorted(shuffled, reverse=True) == [
            JobPriority.CRITICAL,
            JobPriority.HIGH,
            JobPriority.NORMAL,
            JobPriority.LOW,
        ]


class TestJobConfigDefaults:
    def test_default_values(self) -> None:
        config = JobConfig()
        assert config.max_retries == 3
        assert config.priority is JobPriority.NORMAL
        assert config.retry_delay == timedelta(seconds=5)
        assert config.max_retry_delay == timedelta(hours=1)
        assert config.timeout == timedelta(seconds=300)

    def test_config_is_frozen(self) -> None:
        config = JobConfig()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            config.max_retries = 7  # type: ignore[misc]

    def test_configs_compare_by_value(self) -> None:
        assert JobConfig(retry_delay=2) == JobConfig(retry_delay=timedelta(seconds=2))
        assert JobConfig(max_retries=1) != JobConfig(max_retries=2)

    def test_timeout_none_means_no_limit(self) -> None:
        assert JobConfig(timeout=None).timeout is None

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (timedelta(seconds=7), timedelta(seconds=7)),
            (7, timedelta(seconds=7)),
            (1.5, timedelta(seconds=1.5)),
            (0, timedelta(0)),
        ],
    )
    def test_durations_accept_timedelta_or_seconds(
        self, value: object, expected: timedelta
    ) -> None:
        config = JobConfig(retry_delay=value, max_retry_delay=value)  # type: ignore[arg-type]
        assert config.retry_delay == expected
        assert config.max_retry_delay == expected

    def test_timeout_accepts_seconds(self) -> None:
        assert JobConfig(timeout=2.5).timeout == timedelta(seconds=2.5)

    def test_priority_accepts_int_value(self) -> None:
        assert JobConfig(priority=3).priority is JobPriority.CRITICAL  # type: ignore[arg-type]


class TestJobConfigPresets:
    def test_critical_preset(self) -> None:
        config = JobConfig.critical()
        assert config.priority is JobPriority.CRITICAL
        assert config.max_retries == 5
        assert config.timeout == JobConfig().timeout

    def test_critical_preset_with_changes(self) -> None:
        config = JobConfig.critical(max_retries=9, timeout=None)
        assert config.priority is JobPriority.CRITICAL
        assert config.max_retries == 9
        assert config.timeout is None

    def test_no_retry_preset(self) -> None:
        config = JobConfig.no_retry()
        assert config.max_retries == 0
        assert config.priority is JobPriority.NORMAL

    def test_no_retry_preset_with_changes(self) -> None:
        config = JobConfig.no_retry(priority=JobPriority.HIGH)
        assert config.max_retries == 0
        assert config.priority is JobPriority.HIGH


class TestJobConfigValidation:
    @pytest.mark.parametrize("field", ["retry_delay", "max_retry_delay", "timeout"])
    def test_negative_duration_rejected(self, field: str) -> None:
        with pytest.raises(ValueError, match=rf"{field} must not be negative, got -1"):
            JobConfig(**{field: -1})

    def test_negative_timedelta_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"retry_delay must not be negative"):
            JobConfig(retry_delay=timedelta(seconds=-3))

    @pytest.mark.parametrize("field", ["retry_delay", "max_retry_delay", "timeout"])
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_duration_rejected(self, field: str, value: float) -> None:
        with pytest.raises(
            ValueError, match=rf"{field} must be a finite duration, not {value!r}"
        ):
            JobConfig(**{field: value})

    @pytest.mark.parametrize("field", ["retry_delay", "max_retry_delay", "timeout"])
    def test_bool_duration_rejected(self, field: str) -> None:
        with pytest.raises(
            TypeError, match=rf"{field} must be a timedelta or a number.*bool \(True\)"
        ):
            JobConfig(**{field: True})

    @pytest.mark.parametrize("field", ["retry_delay", "max_retry_delay", "timeout"])
    def test_str_duration_rejected(self, field: str) -> None:
        with pytest.raises(
            TypeError, match=rf"{field} must be a timedelta or a number.*str \('5'\)"
        ):
            JobConfig(**{field: "5"})

    @pytest.mark.parametrize("field", ["retry_delay", "max_retry_delay", "timeout"])
    def test_too_long_duration_rejected(self, field: str) -> None:
        with pytest.raises(ValueError, match=rf"{field} is too long.*1e\+20"):
            JobConfig(**{field: 1e20})

    @pytest.mark.parametrize("field", ["retry_delay", "max_retry_delay", "timeout"])
    def test_duration_too_long_to_store_rejected(self, field: str) -> None:
        with pytest.raises(ValueError, match=rf"{field} is too long"):
            JobConfig(**{field: timedelta.max})

    def test_zero_timeout_rejected(self) -> None:
        with pytest.raises(
            ValueError, match=r"timeout must be at least 1 microsecond.*None"
        ):
            JobConfig(timeout=0)

    @pytest.mark.parametrize("value", [-1, -100])
    def test_negative_max_retries_rejected(self, value: int) -> None:
        with pytest.raises(
            ValueError, match=rf"max_retries must be 0 or more, got {value}"
        ):
            JobConfig(max_retries=value)

    def test_max_retries_too_large_to_store_rejected(self) -> None:
        with pytest.raises(
            ValueError, match=rf"max_retries must be at most {2**62}, got {10**30}"
        ):
            JobConfig(max_retries=10**30)

    def test_max_retries_at_limit_accepted(self) -> None:
        assert JobConfig(max_retries=2**62).max_retries == 2**62

    @pytest.mark.parametrize(
        ("value", "shown"),
        [(True, r"bool \(True\)"), (2.0, r"float \(2\.0\)"), ("3", r"str \('3'\)")],
    )
    def test_max_retries_wrong_type_rejected(self, value: object, shown: str) -> None:
        with pytest.raises(
            TypeError, match=rf"max_retries must be an int, not {shown}"
        ):
            JobConfig(max_retries=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("value", "shown"),
        [(7, "7"), (-1, "-1"), ("urgent", "'urgent'"), (True, "True"), (None, "None")],
    )
    def test_unknown_priority_rejected(self, value: object, shown: str) -> None:
        with pytest.raises(ValueError, match=rf"invalid priority {shown}; use one of"):
            JobConfig(priority=value)  # type: ignore[arg-type]


class TestBackoff:
    def test_delay_doubles_per_failed_run(self) -> None:
        config = JobConfig(retry_delay=5, max_retry_delay=timedelta(hours=1))
        delays = [config.backoff(k) for k in range(1, 6)]
        assert delays == [timedelta(seconds=s) for s in (5, 10, 20, 40, 80)]

    def test_delay_capped_at_max_retry_delay(self) -> None:
        config = JobConfig(retry_delay=5, max_retry_delay=30)
        assert config.backoff(3) == timedelta(seconds=20)
        assert config.backoff(4) == timedelta(seconds=30)
        assert config.backoff(5) == timedelta(seconds=30)

    def test_backoff_us_matches_backoff(self) -> None:
        config = JobConfig(retry_delay=0.25, max_retry_delay=100)
        for k in range(1, 12):
            assert config.backoff_us(k) == config.backoff(k) // timedelta(
                microseconds=1
            )

    def test_zero_retry_delay_retries_at_once(self) -> None:
        config = JobConfig(retry_delay=0)
        assert config.backoff(1) == timedelta(0)
        assert config.backoff(10**6) == timedelta(0)

    def test_huge_failed_run_count_is_capped(self) -> None:
        config = JobConfig(retry_delay=5, max_retry_delay=timedelta(hours=1))
        assert config.backoff(10**6) == timedelta(hours=1)
        assert config.backoff_us(10**6) == 3600 * 1_000_000

    def test_huge_count_with_long_cap(self) -> None:
        cap = timedelta(days=36_500)
        config = JobConfig(retry_delay=timedelta(microseconds=1), max_retry_delay=cap)
        assert config.backoff(10**6) == cap

    def test_max_below_retry_delay_wins(self) -> None:
        config = JobConfig(retry_delay=60, max_retry_delay=10)
        assert config.backoff(1) == timedelta(seconds=10)
