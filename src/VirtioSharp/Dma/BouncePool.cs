namespace VirtioSharp.Dma;

/// <summary>
/// A swiotlb-like pool: a range of shared (host-readable) guest memory cut into 2 KiB slots. A mapping takes a run of
/// contiguous slots (at most 128, i.e. 256 KiB, as Linux's IO_TLB_SEGSIZE), and the pool remembers for each run the
/// original buffer so unmap can check it was asked about a mapping the pool really made.
/// </summary>
public sealed class BouncePool
{
    internal const int SlotSize = 2048;
    internal const int MaxSlotsPerMapping = 128;
    private readonly IDmaPlatform _platform;
    private readonly ulong[] _orig;     // original GPA per first slot of a run
    private readonly int[] _runLength;  // slots in the run starting here, 0 if not a run start
    private readonly bool[] _used;
    private SpinGate _lock;   // mutable struct: never readonly, never copied
    private int _hint;

    /// <summary>First guest-physical address of the pool.</summary>
    public ulong Base { get; }
    /// <summary>Bytes in the pool.</summary>
    public ulong Size { get; }
    /// <summary>Number of 2 KiB slots.</summary>
    public int Slots { get; }
    /// <summary>Slots currently taken by mappings.</summary>
    public int SlotsInUse { get; private set; }
    /// <summary>The most slots ever taken at once (the pool's high-water mark).</summary>
    public int SlotsHighWater { get; private set; }
    internal long Failures { get; private set; }

    /// <summary>Takes <paramref name="size"/> bytes from the guest allocator and shares them with the host.</summary>
    public BouncePool(IDmaPlatform platform, ulong size)
    {
        if (size < SlotSize) throw new ArgumentOutOfRangeException(nameof(size), "a bounce pool needs at least one 2 KiB slot");
        _platform = platform;
        Slots = (int)(size / SlotSize);
        Size = (ulong)Slots * SlotSize;
        if (!platform.TryAllocateShared(Size, out ulong b))
            throw new InsufficientMemoryException($"no room for a {Size}-byte bounce pool in the platform's shared memory: make the shared memory larger or the pool smaller");
        Base = b;
        _orig = new ulong[Slots];
        _runLength = new int[Slots];
        _used = new bool[Slots];
    }

    /// <summary>Largest single mapping: 128 slots (256 KiB), or the whole pool if smaller.</summary>
    public ulong MaxMappingSize => (ulong)Math.Min(MaxSlotsPerMapping, Slots) * SlotSize;
    /// <summary>Whether <paramref name="gpa"/> lies inside the pool.</summary>
    public bool Contains(ulong gpa) => gpa - Base < Size;
    internal ulong SlotAddress(int slot) => Base + (ulong)slot * SlotSize;

    internal DmaStatus Allocate(ulong origGpa, uint length, out int slot)
    {
        slot = -1;
        if ((ulong)length > MaxMappingSize) { Failures++; return DmaStatus.TooLarge; }
        int need = (int)((length + SlotSize - 1) / SlotSize);
        _lock.Enter();
        try
        {
            if (!TryFit(_hint, Slots, need, out slot) && !TryFit(0, Math.Min(_hint + need, Slots), need, out slot))
            {
                Failures++;
                return DmaStatus.Exhausted;
            }
            for (int i = 0; i < need; i++) _used[slot + i] = true;
            _orig[slot] = origGpa;
            _runLength[slot] = need;
            SlotsInUse += need;
            if (SlotsInUse > SlotsHighWater) SlotsHighWater = SlotsInUse;
            _hint = slot + need >= Slots ? 0 : slot + need;
        }
        finally { _lock.Exit(); }
        return DmaStatus.Ok;
    }

    private bool TryFit(int start, int limit, int need, out int found)
    {
        for (int p = start; p + need <= limit;)
        {
            int run = 0;
            while (run < need && !_used[p + run]) run++;
            if (run == need) { found = p; return true; }
            p += run + 1;
        }
        found = -1;
        return false;
    }

    /// <summary>Checks a driver's mapping record against the pool's own and frees the run.</summary>
    internal void Release(in DmaMapping mapping)
    {
        _lock.Enter();
        try
        {
            Verify(mapping);
            int need = _runLength[mapping.Slot];
            for (int i = 0; i < need; i++) _used[mapping.Slot + i] = false;
            _runLength[mapping.Slot] = 0;
            SlotsInUse -= need;
            // Next fit starts at the run just freed: its lines are still in cache, so the next copy in is cheap.
            _hint = mapping.Slot;
        }
        finally { _lock.Exit(); }
    }

    internal void Verify(in DmaMapping mapping)
    {
        int slot = mapping.Slot;
        if ((uint)slot >= (uint)Slots || _runLength[slot] == 0 || _orig[slot] != mapping.Gpa ||
            (ulong)mapping.Length > (ulong)_runLength[slot] * SlotSize)
            throw new InvalidOperationException(
                $"bounce unmap/sync of 0x{mapping.Gpa:x}+{mapping.Length} does not match any live bounce mapping (slot {slot}); the mapping record was corrupted or already released");
    }

    internal IDmaPlatform Platform => _platform;
}
