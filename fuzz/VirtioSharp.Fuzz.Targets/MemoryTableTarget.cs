using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// The vhost-user memory table and device IOTLB: SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG over real memfds, IOTLB
/// updates and invalidations, and lookups, reads and writes that cross region and mapping edges. Input: ops
/// (<see cref="Op"/>). Oracle: a reference model of the IOTLB (an update replaces what it overlaps) and of the
/// regions; every translation, every byte read through IOVA, GPA or user address, and every refusal must agree with
/// it; accepted tables never overlap or run past their files; no fd is left open after the state is disposed.
/// </summary>
public static unsafe class MemoryTableTarget
{
    public const int MaxOps = 64;
    private static readonly ulong[] FileSizes = [0x4000, 0x10000, 0x1000];
    private static readonly SafeFd[] Files = FileSizes.Select((size, i) => Pattern(MemFd.Create($"fuzz-mem{i}", size), i, size)).ToArray();

    /// <summary>Op codes, the first byte of each op modulo the count.</summary>
    public enum Op : byte { SetTable, AddRegion, RemoveRegion, IotlbUpdate, IotlbInvalidate, Translate, ReadIova, CheckIova, ReadGpa, UserToGpa }

    private readonly record struct Entry(ulong Iova, ulong Size, ulong Uaddr, byte Perm);
    private readonly record struct Region(VhostMemoryRegion R, int File);

    // Each file holds its own pattern, so any byte read says which file and offset it came from.
    private static byte PatternByte(int file, ulong offset) => (byte)(offset * 31 + (offset >> 8) + (ulong)file * 101);

    private static SafeFd Pattern(SafeFd fd, int file, ulong size)
    {
        using var map = MappedRegion.Map(fd, size, 0);
        var s = new Span<byte>((void*)map.Address, (int)size);
        for (int i = 0; i < s.Length; i++) s[i] = PatternByte(file, (ulong)i);
        return fd;
    }

    public static void Run(ReadOnlySpan<byte> input)
    {
        _ = Files.Length;   // the shared files are opened once, before the count
        FdCensus.Start();
        var c = new ByteCursor(input);
        var state = new VhostMemoryState(allowUnsealed: false, maxBytes: 1UL << 40, TriageLogger.Instance);
        var iotlb = new VhostIotlb(() => state.Table);
        var entries = new List<Entry>();
        var regions = new List<Region>();
        try
        {
            for (int n = 0; n < MaxOps && c.More; n++)
                Step(ref c, state, iotlb, entries, regions);
        }
        finally
        {
            state.Dispose();
        }
        FdCensus.AssertNoneLeaked("by the memory state");
    }

    private static void Step(ref ByteCursor c, VhostMemoryState state, VhostIotlb iotlb, List<Entry> entries, List<Region> regions)
    {
        var op = (Op)(c.U8() % 10);
        switch (op)
        {
            case Op.SetTable:
            {
                int count = c.U8() % 4 + 1;
                var next = new List<Region>();
                for (int i = 0; i < count; i++) next.Add(ReadRegion(ref c));
                var fds = next.Select(r => CloexecDup.Of(Files[r.File])).ToList();
                Apply(() => state.SetTable(next.Select(r => r.R).ToList(), fds), state, fds, () => { regions.Clear(); regions.AddRange(next); });
                break;
            }
            case Op.AddRegion:
            {
                var r = ReadRegion(ref c);
                var fd = CloexecDup.Of(Files[r.File]);
                Apply(() => state.Add(r.R, fd), state, [fd], () => regions.Add(r));
                break;
            }
            case Op.RemoveRegion:
            {
                byte pick = c.U8();
                if (regions.Count == 0) break;
                var r = regions[pick % regions.Count];
                Apply(() => state.Remove(r.R), state, [], () => regions.Remove(r));
                break;
            }
            case Op.IotlbUpdate:
            {
                ulong iova = Addr(ref c), size = Len(ref c), uaddr = Addr(ref c);
                byte perm = c.U8();
                try
                {
                    iotlb.Update(iova, size, uaddr, perm);
                    Invariant.That(size != 0 && iova + size > iova && perm is >= 1 and <= 3, $"IOTLB accepted iova 0x{iova:x} size 0x{size:x} perm {perm}");
                    entries.RemoveAll(e => !(e.Iova + e.Size <= iova || iova + size <= e.Iova));
                    entries.Add(new Entry(iova, size, uaddr, perm));
                }
                catch (VhostProtocolException) { }
                break;
            }
            case Op.IotlbInvalidate:
            {
                ulong iova = Addr(ref c), size = Len(ref c);
                iotlb.Invalidate(iova, size);
                ulong end = size == 0 || iova + size < iova ? ulong.MaxValue : iova + size;
                entries.RemoveAll(e => !(e.Iova + e.Size <= iova || end <= e.Iova));
                break;
            }
            case Op.Translate:
            {
                ulong iova = Addr(ref c);
                var access = (Access)(c.U8() % 3 + 1);
                var st = iotlb.Translate(iova, access, out ulong gpa, out ulong contig);
                var (est, egpa, econtig) = Model(entries, state, iova, access);
                Invariant.That(st == est, $"translate 0x{iova:x} {access}: {st}, the model says {est}");
                if (st == MemStatus.Ok) Invariant.That(gpa == egpa && contig == econtig, $"translate 0x{iova:x}: gpa 0x{gpa:x}+0x{contig:x}, the model says 0x{egpa:x}+0x{econtig:x}");
                break;
            }
            case Op.ReadIova:
            case Op.CheckIova:
            {
                // Reads only: the files are shared by every input, so the device never writes them here.
                bool check = op == Op.CheckIova;
                var access = check ? (Access)(c.U8() % 3 + 1) : Access.Read;
                ulong iova = Addr(ref c);
                int len = c.U8() + 1;
                if (state.Table is not { } table) break;
                var mem = new DeviceMemory<TranslatorRef, RamPort>(new TranslatorRef(iotlb), new RamPort(table.Memory));
                var buf = new byte[len];
                var st = check ? mem.Check(iova, (ulong)len, access) : mem.Read(iova, buf);
                // Byte by byte through the model: the access is all right iff every byte translates and is backed.
                MemStatus expect = MemStatus.Ok;
                for (int i = 0; i < len && expect == MemStatus.Ok; i++)
                {
                    var (bst, bgpa, _) = Model(entries, state, iova + (ulong)i, access);
                    if (iova + (ulong)i < iova) bst = MemStatus.Overflow;
                    expect = bst;
                    if (bst == MemStatus.Ok && st == MemStatus.Ok && !check) Invariant.That(buf[i] == Expected(regions, bgpa), $"byte {i} read at iova 0x{iova:x} differs from the file");
                }
                Invariant.That((st == MemStatus.Ok) == (expect == MemStatus.Ok), $"{(check ? "check" : "read")} of {len} at iova 0x{iova:x} ({access}): {st}, the model says {expect}");
                break;
            }
            case Op.ReadGpa:
            {
                ulong gpa = Addr(ref c);
                int len = c.U8() + 1;
                if (state.Table is not { } table) break;
                var buf = new byte[len];
                var st = table.Memory.Read(gpa, buf);
                bool all = gpa + (ulong)len >= gpa;
                for (int i = 0; i < len && all; i++) all = RegionAtGpa(regions, gpa + (ulong)i) is not null;
                Invariant.That((st == MemStatus.Ok) == all, $"GPA read of {len} at 0x{gpa:x}: {st}, regions say {(all ? "backed" : "not backed")}");
                if (st == MemStatus.Ok)
                    for (int i = 0; i < len; i++) Invariant.That(buf[i] == Expected(regions, gpa + (ulong)i), $"GPA byte 0x{gpa + (ulong)i:x} differs from its file");
                break;
            }
            case Op.UserToGpa:
            {
                ulong uaddr = Addr(ref c), len = Len(ref c);
                if (state.Table is not { } table) break;
                bool ok = table.TryUserToGpa(uaddr, len, out ulong gpa);
                var r = regions.FirstOrDefault(x => uaddr - x.R.UserspaceAddr < x.R.MemorySize);
                bool expect = r != default && len <= r.R.MemorySize - (uaddr - r.R.UserspaceAddr);
                Invariant.That(ok == expect, $"user 0x{uaddr:x}+0x{len:x}: {ok}, regions say {expect}");
                if (ok) Invariant.That(gpa == r.R.GuestPhysAddr + (uaddr - r.R.UserspaceAddr), "user address mapped to the wrong GPA");
                break;
            }
        }
        if (state.Table is { } t)
        {
            Invariant.That(t.Count == regions.Count, $"table has {t.Count} regions, the model {regions.Count}");
            CheckTable(regions);
        }
        else Invariant.That(regions.Count == 0, "regions without a table");
    }

    /// <summary>Runs a table change; a refusal must leave everything as it was and its fds to the caller.</summary>
    private static void Apply(Func<VhostMemoryState.Pending> prepare, VhostMemoryState state, List<SafeFd> fds, Action accepted)
    {
        VhostMemoryState.Pending p;
        try { p = prepare(); }
        catch (VhostProtocolException)
        {
            foreach (var fd in fds) fd.Dispose();
            return;
        }
        state.Swap(p);
        accepted();
    }

    private static void CheckTable(List<Region> regions)
    {
        for (int i = 0; i < regions.Count; i++)
        {
            var r = regions[i].R;
            Invariant.That(r.MemorySize > 0 && r.MmapOffset + r.MemorySize <= FileSizes[regions[i].File] && r.MmapOffset + r.MemorySize >= r.MmapOffset, $"accepted region {i} does not fit its file");
            Invariant.That(r.GuestPhysAddr + r.MemorySize > r.GuestPhysAddr && r.UserspaceAddr + r.MemorySize > r.UserspaceAddr, $"accepted region {i} wraps");
            for (int j = 0; j < i; j++)
            {
                var o = regions[j].R;
                Invariant.That(r.GuestPhysAddr >= o.GuestPhysAddr + o.MemorySize || o.GuestPhysAddr >= r.GuestPhysAddr + r.MemorySize, $"accepted regions {j} and {i} overlap in GPA");
                Invariant.That(r.UserspaceAddr >= o.UserspaceAddr + o.MemorySize || o.UserspaceAddr >= r.UserspaceAddr + r.MemorySize, $"accepted regions {j} and {i} overlap in user space");
            }
        }
    }

    private static Region? RegionAtGpa(List<Region> regions, ulong gpa)
    {
        foreach (var r in regions)
            if (gpa - r.R.GuestPhysAddr < r.R.MemorySize) return r;
        return null;
    }

    private static byte Expected(List<Region> regions, ulong gpa)
    {
        var r = RegionAtGpa(regions, gpa)!.Value;
        return PatternByte(r.File, r.R.MmapOffset + (gpa - r.R.GuestPhysAddr));
    }

    private static (MemStatus, ulong, ulong) Model(List<Entry> entries, VhostMemoryState state, ulong iova, Access access)
    {
        byte need = (byte)(((access & Access.Read) != 0 ? 1 : 0) | ((access & Access.Write) != 0 ? 2 : 0));
        var hit = entries.Where(e => iova - e.Iova < e.Size).ToList();
        Invariant.That(hit.Count <= 1, "the IOTLB model holds overlapping entries");
        if (hit.Count == 0) return (MemStatus.TranslationFault, 0, 0);
        var e = hit[0];
        if ((e.Perm & need) != need) return (MemStatus.PermissionFault, 0, 0);
        ulong uaddr = e.Uaddr + (iova - e.Iova);
        if (state.Table is null) return (MemStatus.Unmapped, 0, 0);
        foreach (var r in state.Table.Regions)
        {
            ulong off = uaddr - r.UserspaceAddr;
            if (off < r.MemorySize) return (MemStatus.Ok, r.GuestPhysAddr + off, Math.Min(r.MemorySize - off, e.Size - (iova - e.Iova)));
        }
        return (MemStatus.Unmapped, 0, 0);
    }

    private static Region ReadRegion(ref ByteCursor c)
    {
        byte mode = c.U8();
        int file = mode % 3;
        ulong gpa, size, uaddr, offset;
        if ((mode & 0x80) != 0) { gpa = c.U64(); size = c.U64(); uaddr = c.U64(); offset = c.U64(); }
        else
        {
            // Small page-granular layouts, the common case, with odd sizes and offsets now and then.
            gpa = (ulong)c.U8() * 0x1000 + ((mode & 8) != 0 ? 2UL : 0);
            size = (ulong)(c.U8() % 16 + 1) * 0x1000 - ((mode & 16) != 0 ? 0x10UL : 0);
            uaddr = 0x7f00_0000_0000UL + (ulong)c.U8() * 0x1000;
            offset = (mode & 32) != 0 ? (ulong)c.U8() * 0x100 : 0;
        }
        return new Region(new VhostMemoryRegion(gpa, size, uaddr, offset), file);
    }

    private static ulong Addr(ref ByteCursor c)
    {
        byte mode = c.U8();
        return (mode % 4) switch
        {
            0 => (ulong)c.U16() * 0x10,
            1 => 0x7f00_0000_0000UL + c.U32() % 0x20_0000,
            2 => c.U64(),
            _ => (ulong)c.U8() * 0x1000 - 8,   // just before a page (and region) edge
        };
    }

    private static ulong Len(ref ByteCursor c)
    {
        byte mode = c.U8();
        return (mode % 3) switch { 0 => (ulong)c.U8() * 0x1000, 1 => c.U16(), _ => c.U64() };
    }
}
