namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// How a vhost-user back-end treats its front-end: what memory it accepts and how long it waits for a peer that
/// stops reading. The defaults are the safe ones; each relaxation says what it risks.
/// </summary>
public sealed class VhostUserBackendOptions
{
    /// <summary>
    /// Accept memory and inflight fds that are not sealed against shrinking (F_SEAL_SHRINK): a front-end that then
    /// truncates such a file crashes the back-end process (SIGBUS on the next access). Off by default; QEMU's
    /// memory-backend-memfd seals its memory unless told seal=off.
    /// </summary>
    public bool AllowUnsealedMemory { get; init; }

    /// <summary>
    /// The longest a send on the back-end channel (IOTLB miss, config change) may wait for the front-end to read; past
    /// it the channel is closed, and a ring waiting on it breaks (DEVICE_NEEDS_RESET) with a log line saying why.
    /// </summary>
    public TimeSpan BackendChannelTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest a reply on the main socket may wait for the front-end to read; past it the connection is closed.</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The longest a ring worker waits for the IOTLB UPDATE that answers its miss; past it the access faults.</summary>
    public TimeSpan IotlbMissTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest an IOTLB invalidation waits for storage I/O translated before it (zero-copy requests still moving data
    /// through the old mapping) before it is confirmed anyway, with a warning.
    /// </summary>
    public TimeSpan DirectIoFenceTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Log lines per second a front-end can cause after a burst of <see cref="LogBurst"/>; the rest are counted and
    /// reported as one line. 0: no limit.
    /// </summary>
    public double LogLinesPerSecond { get; init; } = 20;

    /// <summary>Log lines allowed at once before <see cref="LogLinesPerSecond"/> applies.</summary>
    public double LogBurst { get; init; } = 200;

    /// <summary>
    /// The most guest memory one connection may map (all regions together, with their file offsets). A front-end
    /// that sends more is refused rather than allowed to exhaust the back-end's address space.
    /// </summary>
    public ulong MaxGuestMemoryBytes { get; init; } = 4UL << 40;

    /// <summary>
    /// Busy-polling (CLI <c>--poll-us</c>): after a round that had work, a ring worker spins this long, with
    /// notifications off, looking at the avail ring and at its event sources before it sleeps on the kick eventfd (as
    /// QEMU's IOThread poll-max-ns and SPDK do). It saves the sleep, the kick and the wake-up per request at low queue
    /// depth, and costs up to this much CPU per idle period. Zero (default): no polling. At most 1 s.
    /// </summary>
    public TimeSpan PollTime
    {
        get => _pollTime;
        init => _pollTime = value >= TimeSpan.Zero && value <= TimeSpan.FromSeconds(1) ? value
            : throw new ArgumentOutOfRangeException(nameof(PollTime), value, "PollTime must be between 0 and 1 s (--poll-us 0..1000000)");
    }
    private readonly TimeSpan _pollTime;

    /// <summary>The defaults.</summary>
    public static VhostUserBackendOptions Default { get; } = new();

    internal static int Milliseconds(TimeSpan t) => (int)Math.Clamp(t.TotalMilliseconds, 1, int.MaxValue);

    /// <summary>
    /// FAULT INJECTION, tests only (CLI <c>--inject-no-dirty-log</c>): VHOST_F_LOG_ALL is still offered and accepted, but
    /// nothing is logged, so a live migration silently loses what the back-end wrote while it ran. It exists to show
    /// that the migration test can fail; never use it in service.
    /// </summary>
    public bool InjectNoDirtyLog { get; init; }
}
