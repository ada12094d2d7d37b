namespace VirtioSharp.Queues;

/// <summary>
/// Device-side hooks that record which chains are in flight somewhere that survives the device process
/// (vhost-user.rst "Inflight I/O tracking", split layout): popped, about to be used, used.
/// </summary>
public interface IInflightLog
{
    /// <summary>A chain with this head was popped and is now in flight.</summary>
    void Popped(ushort head);
    /// <summary>Before the used element is written: this head is the batch in progress.</summary>
    void Using(ushort head);
    /// <summary>After used idx was published.</summary>
    void Used(ushort head, ushort usedIdx);
}
