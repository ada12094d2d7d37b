using Microsoft.Extensions.Logging;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The front-end's memory as the back-end mapped it: each region is known by guest-physical address and by the
/// front-end's user address. Validated on arrival: sizes non-zero, no 64-bit overflow, no overlap in either space.
/// </summary>
internal sealed class VhostMemoryTable : IDisposable
{
    private readonly (VhostMemoryRegion Region, MappedRegion Map, nint Host)[] _regions;

    private VhostMemoryTable((VhostMemoryRegion, MappedRegion, nint)[] regions, GuestMemory memory)
    {
        _regions = regions;
        Memory = memory;
    }

    public GuestMemory Memory { get; }
    public int Count => _regions.Length;
    public IEnumerable<VhostMemoryRegion> Regions => _regions.Select(r => r.Region);

    public static void Validate(IReadOnlyList<VhostMemoryRegion> regions)
    {
        for (int i = 0; i < regions.Count; i++)
        {
            var r = regions[i];
            if (r.MemorySize == 0) throw new VhostProtocolException($"memory region {i} has size 0");
            if (r.GuestPhysAddr + r.MemorySize < r.GuestPhysAddr || r.UserspaceAddr + r.MemorySize < r.UserspaceAddr ||
                r.MmapOffset + r.MemorySize < r.MmapOffset || r.MmapOffset > long.MaxValue)
                throw new VhostProtocolException($"memory region {i} (gpa 0x{r.GuestPhysAddr:x} size 0x{r.MemorySize:x} uaddr 0x{r.UserspaceAddr:x} offset 0x{r.MmapOffset:x}) overflows 64 bits");
            if ((r.GuestPhysAddr | r.MemorySize) % 2 != 0) throw new VhostProtocolException($"memory region {i} is not 2-byte aligned");
            for (int j = 0; j < i; j++)
            {
                var o = regions[j];
                if (r.GuestPhysAddr < o.GuestPhysAddr + o.MemorySize && o.GuestPhysAddr < r.GuestPhysAddr + r.MemorySize)
                    throw new VhostProtocolException($"memory regions {j} and {i} overlap in guest-physical space");
                if (r.UserspaceAddr < o.UserspaceAddr + o.MemorySize && o.UserspaceAddr < r.UserspaceAddr + r.MemorySize)
                    throw new VhostProtocolException($"memory regions {j} and {i} overlap in front-end address space");
            }
        }
    }

    /// <summary>Maps every region; on any failure everything mapped so far is unmapped and every fd closed by the caller.</summary>
    public static VhostMemoryTable Map(IReadOnlyList<VhostMemoryRegion> regions, IReadOnlyList<SafeFd> fds, bool allowUnsealed, ILogger? log = null)
    {
        Validate(regions);
        if (fds.Count != regions.Count)
            throw new VhostProtocolException($"memory table has {regions.Count} regions but {fds.Count} file descriptors");
        var mapped = new List<(VhostMemoryRegion, MappedRegion, nint)>();
        try
        {
            for (int i = 0; i < regions.Count; i++)
            {
                var r = regions[i];
                // Sealed against shrinking, the size checked below stays true for the mapping's life.
                if (!PeerFd.RequireSharedMemory(fds[i], $"memory region {i}", allowUnsealed) && log is not null)
                    log.LogWarning("memory region {Index} is not sealed against shrinking (accepted by --allow-unsealed-memory): a front-end that truncates it crashes this back-end", i);
                // A mapping past the end of the file would SIGBUS on first touch: the file must hold the region.
                long fileSize = fds[i].GetSize();
                if (fileSize < 0 || (ulong)fileSize < r.MmapOffset + r.MemorySize)
                    throw new VhostProtocolException($"memory region {i} needs {r.MmapOffset + r.MemorySize} bytes of its file, which has {fileSize} (mmap would fault)");
                // Map from offset 0 as QEMU's own back-ends do: mmap offsets must be page aligned, region offsets need not.
                var map = MappedRegion.Map(fds[i], r.MmapOffset + r.MemorySize, 0);
                mapped.Add((r, map, map.Address + (nint)r.MmapOffset));
            }
            var guest = new GuestMemory(mapped.Select((m, i) =>
                new GuestRegion(m.Item1.GuestPhysAddr, m.Item1.MemorySize, m.Item3, null, $"vhost-region{i}")).ToArray());
            return new VhostMemoryTable(mapped.ToArray(), guest);
        }
        catch
        {
            foreach (var m in mapped) m.Item2.Dispose();
            throw;
        }
    }

    /// <summary>Front-end user address → guest-physical address, for a range that must lie in one region.</summary>
    public bool TryUserToGpa(ulong uaddr, ulong length, out ulong gpa)
    {
        foreach (var (r, _, _) in _regions)
        {
            ulong off = uaddr - r.UserspaceAddr;
            if (off < r.MemorySize && length <= r.MemorySize - off)
            {
                gpa = r.GuestPhysAddr + off;
                return true;
            }
        }
        gpa = 0;
        return false;
    }

    /// <summary>User address → GPA and how many bytes stay in that region.</summary>
    public bool TryUserToGpa(ulong uaddr, out ulong gpa, out ulong contiguous)
    {
        foreach (var (r, _, _) in _regions)
        {
            ulong off = uaddr - r.UserspaceAddr;
            if (off < r.MemorySize)
            {
                gpa = r.GuestPhysAddr + off;
                contiguous = r.MemorySize - off;
                return true;
            }
        }
        gpa = 0;
        contiguous = 0;
        return false;
    }

    public void Dispose()
    {
        foreach (var (_, map, _) in _regions) map.Dispose();
    }
}
