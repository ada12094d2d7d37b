namespace VirtioSharp.Storage;

/// <summary>
/// Counters of a <see cref="FileStorage"/>, over all its queues; read from any thread (each value is read atomically,
/// the set is not a snapshot).
/// </summary>
public sealed class FileStorageStats
{
    internal long submitted, completed, errors, bounced, bouncedBytes, eofZeroFills, flushes, flushesIgnored,
        fuaWrites, zeroWriteFallbacks, slowPath, inline, abandoned;

    /// <summary>Requests accepted by Submit.</summary>
    public long Submitted => Volatile.Read(ref submitted);
    /// <summary>Requests whose completion was reaped (with or without an error).</summary>
    public long Completed => Volatile.Read(ref completed);
    /// <summary>Completions with a non-zero errno.</summary>
    public long Errors => Volatile.Read(ref errors);
    /// <summary>O_DIRECT requests copied through an aligned bounce buffer because their memory was not aligned.</summary>
    public long BouncedRequests => Volatile.Read(ref bounced);
    /// <summary>Bytes copied through bounce buffers.</summary>
    public long BouncedBytes => Volatile.Read(ref bouncedBytes);
    /// <summary>Reads that met the end of the file (it shrank under us) and were completed with zeros.</summary>
    public long EofZeroFills => Volatile.Read(ref eofZeroFills);
    /// <summary>fdatasync calls made for FLUSH.</summary>
    public long Flushes => Volatile.Read(ref flushes);
    /// <summary>FLUSH requests completed without syncing (cache=unsafe).</summary>
    public long FlushesIgnored => Volatile.Read(ref flushesIgnored);
    /// <summary>FUA writes submitted with RWF_DSYNC.</summary>
    public long FuaWrites => Volatile.Read(ref fuaWrites);
    /// <summary>WRITE_ZEROES done by writing zeros because the file system refused fallocate (EOPNOTSUPP).</summary>
    public long ZeroWriteFallbacks => Volatile.Read(ref zeroWriteFallbacks);
    /// <summary>io_uring requests finished by the queue's helper thread (short transfers, bounces, ioctls, retries).</summary>
    public long SlowPath => Volatile.Read(ref slowPath);
    /// <summary>io_uring-mode requests run inline on the ring's thread (memory-backed file, <see cref="FileStorageOptions.InlineMemoryBacked"/>).</summary>
    public long Inline => Volatile.Read(ref inline);
    /// <summary>Requests still in flight when a queue was disposed after its drain timeout (their buffers were leaked).</summary>
    public long Abandoned => Volatile.Read(ref abandoned);

    /// <summary>One line for a stats log.</summary>
    public override string ToString() =>
        $"submitted={Submitted} completed={Completed} errors={Errors} bounced={BouncedRequests} eof-zero-fills={EofZeroFills} " +
        $"flushes={Flushes} flushes-ignored={FlushesIgnored} fua-writes={FuaWrites} zero-write-fallbacks={ZeroWriteFallbacks} " +
        $"slow-path={SlowPath} inline={Inline} abandoned={Abandoned}";
}
