namespace VirtioSharp.Queues;

/// <summary>
/// Device-side hooks for the packed layout of vhost-user.rst "Inflight I/O tracking": a packed ring overwrites available
/// descriptors with used ones, so the log keeps a copy of each chain's ring descriptors. Using, Publishing and Committed
/// bracket the flags store that makes a used descriptor visible, so a restarted device can tell whether it happened.
/// </summary>
public interface IPackedInflightLog
{
    /// <summary>A chain was popped and validated; returns the log entry that now stands for it.</summary>
    ushort Popped(DescriptorChain chain);
    /// <summary>The chain recorded at <paramref name="entry"/> joins the used batch about to be published.</summary>
    void Using(ushort entry);
    /// <summary>Before the used descriptor's flags store: the device's next used offset and wrap counter after it.</summary>
    void Publishing(int nextUsed, bool usedWrap);
    /// <summary>After the flags store: the batch is visible to the driver.</summary>
    void Committed();
}
