using VirtioSharp.Memory;

namespace VirtioSharp.Tests.Support;

/// <summary>A device address space whose writes <see cref="WriteInterrupter"/> can cut short; everything else goes to <typeparamref name="TInner"/>.</summary>
public readonly struct InterruptingMemory<TInner>(TInner inner, WriteInterrupter gate) : IDeviceMemory where TInner : struct, IDeviceMemory
{
    public MemStatus Read(ulong addr, Span<byte> dst) => inner.Read(addr, dst);
    public MemStatus LoadU16Acquire(ulong addr, out ushort value) => inner.LoadU16Acquire(addr, out value);
    public MemStatus LoadU16AcquireThenRead(ulong addr, int acquireOffset, out ushort value, Span<byte> dst) =>
        inner.LoadU16AcquireThenRead(addr, acquireOffset, out value, dst);
    public MemStatus Write(ulong addr, ReadOnlySpan<byte> src) => gate.Cuts(addr, src.Length) ? MemStatus.Interrupted : inner.Write(addr, src);
    public MemStatus StoreU16Release(ulong addr, ushort value) => gate.Cuts(addr, 2) ? MemStatus.Interrupted : inner.StoreU16Release(addr, value);
    public void Barrier(BarrierOp op, Dma.BarrierKind strength) => inner.Barrier(op, strength);
    public MemStatus Check(ulong addr, ulong len, Access access) => inner.Check(addr, len, access);
    public bool LogsWrites => inner.LogsWrites;
    public MemStatus MarkWritten(ulong addr, ulong len) => inner.MarkWritten(addr, len);
    public MemStatus MapForIo(ulong addr, ulong len, Access access, out nint host, out ulong contiguous) => inner.MapForIo(addr, len, access, out host, out contiguous);
}
