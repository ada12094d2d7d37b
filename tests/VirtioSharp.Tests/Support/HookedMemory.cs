using System.Runtime.InteropServices;
using VirtioSharp.Memory;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A device address space whose reads pass through a <see cref="ReadHook"/>, so a test can play a driver that rewrites
/// the ring between (or during) the device's accesses. Everything else goes straight to <typeparamref name="TInner"/>.
/// </summary>
public readonly struct HookedMemory<TInner>(TInner inner, ReadHook hook) : IDeviceMemory where TInner : struct, IDeviceMemory
{
    public MemStatus Read(ulong addr, Span<byte> dst)
    {
        var st = inner.Read(addr, dst);
        if (st == MemStatus.Ok) hook.AfterRead?.Invoke(addr, dst);
        return st;
    }

    public MemStatus LoadU16Acquire(ulong addr, out ushort value)
    {
        var st = inner.LoadU16Acquire(addr, out value);
        if (st == MemStatus.Ok && hook.AfterRead is { } h)
        {
            // The raw value is the ring's bytes in host order; hand them to the hook as bytes.
            Span<ushort> v = [value];
            h(addr, MemoryMarshal.AsBytes(v));
            value = v[0];
        }
        return st;
    }

    // Two hooked accesses, so a racing peer can still change the record between the flags load and the body read.
    public MemStatus LoadU16AcquireThenRead(ulong addr, int acquireOffset, out ushort value, Span<byte> dst)
    {
        var st = LoadU16Acquire(addr + (ulong)acquireOffset, out value);
        return st != MemStatus.Ok ? st : Read(addr, dst);
    }

    public MemStatus Write(ulong addr, ReadOnlySpan<byte> src) => inner.Write(addr, src);
    public void Barrier(BarrierOp op, Dma.BarrierKind strength) => inner.Barrier(op, strength);
    public MemStatus StoreU16Release(ulong addr, ushort value) => inner.StoreU16Release(addr, value);
    public MemStatus Check(ulong addr, ulong len, Access access) => inner.Check(addr, len, access);
    public bool LogsWrites => inner.LogsWrites;
    public MemStatus MarkWritten(ulong addr, ulong len) => inner.MarkWritten(addr, len);
    public MemStatus MapForIo(ulong addr, ulong len, Access access, out nint host, out ulong contiguous) => inner.MapForIo(addr, len, access, out host, out contiguous);
}
