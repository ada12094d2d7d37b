namespace VirtioSharp.Tests.Support;

/// <summary>
/// Which device writes <see cref="InterruptingMemory{TInner}"/> cuts short: while <see cref="Armed"/>, every write
/// touching [<see cref="From"/>, <see cref="To"/>) reports <see cref="Memory.MemStatus.Interrupted"/> and writes nothing,
/// as a vhost-user IOTLB miss does when its ring is paused meanwhile.
/// </summary>
public sealed class WriteInterrupter
{
    public volatile bool Armed;
    public ulong From, To;
    public int Interrupted;

    public bool Cuts(ulong addr, int len)
    {
        if (!Armed || addr + (ulong)len <= From || addr >= To) return false;
        Interrupted++;
        return true;
    }
}
