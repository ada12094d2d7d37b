namespace VirtioSharp.Queues;

/// <summary>
/// What a device queue continues from after its previous owner stopped or died (one API for split and packed rings):
/// a position, the chains that were taken but never used (handed out again first, in this order), and the log
/// that records chains in flight from now on (vhost-user.rst "Inflight I/O tracking").
/// </summary>
public sealed record QueueRestore
{
    /// <summary>Where to resume. With <see cref="ResubmitChains"/> (packed) only the used half counts: the avail
    /// position follows from the recovered chains' ring slots.</summary>
    public QueuePosition Position { get; init; }
    /// <summary>Split rings: heads popped but never used, handed out again before new avail entries.</summary>
    public IReadOnlyList<ushort>? ResubmitHeads { get; init; }
    /// <summary>Packed rings: chains a log recovered (their ring descriptors are overwritten by now).</summary>
    public IReadOnlyList<RecordedChain>? ResubmitChains { get; init; }
    /// <summary>Split rings: records chains in flight from now on.</summary>
    public IInflightLog? Log { get; init; }
    /// <summary>Packed rings: records chains in flight from now on.</summary>
    public IPackedInflightLog? PackedLog { get; init; }
    /// <summary>
    /// Used entries the previous owner produced but could not publish (<see cref="DeviceQueue{TMem}.UnpublishedUsed"/>):
    /// the restored queue publishes them first, in this order, right after <see cref="Position"/>'s used position.
    /// </summary>
    public IReadOnlyList<UsedElement>? Unpublished { get; init; }
}
