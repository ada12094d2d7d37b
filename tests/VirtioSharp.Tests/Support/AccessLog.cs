using VirtioSharp.Memory;

namespace VirtioSharp.Tests.Support;

/// <summary>One device access as the queue code issued it, with what the address space answered.</summary>
public readonly record struct DeviceAccess(ulong Addr, ulong Length, Access Access, MemStatus Status, bool IsCheck);

/// <summary>Every access a <see cref="LoggingMemory{TInner}"/> saw, in order.</summary>
public sealed class AccessLog
{
    public List<DeviceAccess> Entries { get; } = new();

    /// <summary>Accesses that reached memory (succeeded and were not mere permission checks).</summary>
    public IEnumerable<DeviceAccess> Touched => Entries.Where(e => !e.IsCheck && e.Status == MemStatus.Ok);
    public IEnumerable<DeviceAccess> Writes => Touched.Where(e => e.Access == Access.Write);
    public IEnumerable<DeviceAccess> Refused => Entries.Where(e => e.Status != MemStatus.Ok);

    public void Clear() => Entries.Clear();
    internal void Add(DeviceAccess a) => Entries.Add(a);

    /// <summary>Asserts every access that reached memory lies inside one of the allowed [start, end) bus ranges.</summary>
    public void AssertTouchedOnlyWithin(params (ulong Start, ulong End)[] allowed)
    {
        foreach (var t in Touched)
        {
            bool inside = allowed.Any(r => t.Addr >= r.Start && t.Addr + t.Length <= r.End);
            Assert.True(inside, $"device touched 0x{t.Addr:x}+{t.Length} ({t.Access}) outside every allowed range");
        }
    }
}

/// <summary>A device address space that records every access made through it before passing it on.</summary>
public readonly struct LoggingMemory<TInner>(TInner inner, AccessLog log) : IDeviceMemory where TInner : struct, IDeviceMemory
{
    public AccessLog Log { get; } = log;

    public MemStatus Read(ulong addr, Span<byte> dst)
    {
        var st = inner.Read(addr, dst);
        Log.Add(new(addr, (ulong)dst.Length, Access.Read, st, false));
        return st;
    }

    public MemStatus Write(ulong addr, ReadOnlySpan<byte> src)
    {
        var st = inner.Write(addr, src);
        Log.Add(new(addr, (ulong)src.Length, Access.Write, st, false));
        return st;
    }

    public MemStatus LoadU16Acquire(ulong addr, out ushort value)
    {
        var st = inner.LoadU16Acquire(addr, out value);
        Log.Add(new(addr, 2, Access.Read, st, false));
        return st;
    }

    public MemStatus LoadU16AcquireThenRead(ulong addr, int acquireOffset, out ushort value, Span<byte> dst)
    {
        var st = inner.LoadU16AcquireThenRead(addr, acquireOffset, out value, dst);
        Log.Add(new(addr, (ulong)dst.Length, Access.Read, st, false));
        return st;
    }

    public MemStatus StoreU16Release(ulong addr, ushort value)
    {
        var st = inner.StoreU16Release(addr, value);
        Log.Add(new(addr, 2, Access.Write, st, false));
        return st;
    }

    public MemStatus Check(ulong addr, ulong len, Access access)
    {
        var st = inner.Check(addr, len, access);
        Log.Add(new(addr, len, access, st, true));
        return st;
    }
}
