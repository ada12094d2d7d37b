using System.Runtime.CompilerServices;

namespace VirtioSharp.Interop;

/// <summary>
/// One io_uring instance (io_uring(7), io_uring_setup(2)): the submission and completion rings and the SQE array
/// mapped into this process, requests prepared in place, a batch started with one io_uring_enter(2), and completions
/// reaped from shared memory without a system call. Single-threaded: one owner prepares, submits and reaps.
/// </summary>
/// <remarks>
/// The rings are shared with the kernel, which runs on other CPUs: the kernel reads the SQ tail and writes the SQ head
/// and CQ tail, we write the SQ tail and CQ head. io_uring(7) prescribes the ordering: SQE contents must be visible
/// before the tail that publishes them (release store), CQE contents are only valid after the tail that covers them is
/// read (acquire load), and the CQ head we store (release) tells the kernel it may overwrite the CQEs we have copied.
/// Disposing closes the ring; the kernel then cancels or finishes whatever is still in flight on its own, so the owner
/// must not free memory those requests point at until they have completed.
/// </remarks>
internal sealed unsafe class IoUring : IDisposable
{
    private readonly SafeFd _fd;
    private readonly MappedRegion _sqRing, _sqes;
    private readonly MappedRegion? _cqRing;   // null with IORING_FEAT_SINGLE_MMAP: the CQ ring shares _sqRing
    private readonly uint* _sqHead, _sqTail, _sqFlags, _sqArray, _cqHead, _cqTail;
    private readonly LibC.IoUringSqe* _sqeBase;
    private readonly LibC.IoUringCqe* _cqes;
    private readonly uint _sqMask, _cqMask;
    private uint _sqLocalTail;   // SQEs handed out; published to the kernel by Submit

    private IoUring(SafeFd fd, in LibC.IoUringParams p, MappedRegion sqRing, MappedRegion? cqRing, MappedRegion sqes)
    {
        _fd = fd; _sqRing = sqRing; _cqRing = cqRing; _sqes = sqes;
        SqEntries = p.SqEntries; CqEntries = p.CqEntries; Features = p.Features; SetupFlags = p.Flags;
        byte* sq = (byte*)sqRing.Address, cq = (byte*)(cqRing ?? sqRing).Address;
        _sqHead = (uint*)(sq + p.SqHead); _sqTail = (uint*)(sq + p.SqTail); _sqFlags = (uint*)(sq + p.SqFlags);
        _sqArray = (uint*)(sq + p.SqArray); _sqMask = *(uint*)(sq + p.SqRingMask);
        _cqHead = (uint*)(cq + p.CqHead); _cqTail = (uint*)(cq + p.CqTail); _cqMask = *(uint*)(cq + p.CqRingMask);
        _cqes = (LibC.IoUringCqe*)(cq + p.CqCqes);
        _sqeBase = (LibC.IoUringSqe*)sqes.Address;
        // The SQ array maps ring slots to SQE indices; identity once, so slot i always names SQE i (as liburing does).
        for (uint i = 0; i < SqEntries; i++) _sqArray[i] = i;
        _sqLocalTail = *_sqTail;
    }

    /// <summary>Submission queue entries (a power of two, at least the entries asked for unless clamped).</summary>
    public uint SqEntries { get; }
    /// <summary>Completion queue entries (twice the SQ by default, io_uring_setup(2)).</summary>
    public uint CqEntries { get; }
    /// <summary>IORING_FEAT_* the kernel reported.</summary>
    public uint Features { get; }
    /// <summary>IORING_SETUP_* flags the ring was created with.</summary>
    public uint SetupFlags { get; }
    /// <summary>The ring's descriptor (for io_uring_register and tests).</summary>
    public SafeFd Handle => _fd;

    /// <summary>
    /// Creates a ring of at least <paramref name="entries"/> SQEs. Returns 0 and the ring, or the errno of the call that
    /// failed (ENOSYS: no io_uring; EPERM: disabled by sysctl kernel.io_uring_disabled or seccomp; ENOMEM: memlock).
    /// </summary>
    public static int TryCreate(uint entries, out IoUring? ring)
    {
        ring = null;
        var p = new LibC.IoUringParams { Flags = LibC.IORING_SETUP_CLAMP | LibC.IORING_SETUP_SUBMIT_ALL };
        long fd = LibC.Syscall(LibC.SYS_io_uring_setup, (nint)entries, (nint)(&p), 0, 0, 0, 0);
        if (fd < 0 && LibC.Errno == LibC.EINVAL)
        {
            // SUBMIT_ALL is Linux 5.18; without it one bad SQE stops the batch (Submit retries the rest).
            p = new LibC.IoUringParams { Flags = LibC.IORING_SETUP_CLAMP };
            fd = LibC.Syscall(LibC.SYS_io_uring_setup, (nint)entries, (nint)(&p), 0, 0, 0, 0);
        }
        if (fd < 0) return LibC.Errno;
        var h = new SafeFd((int)fd);
        MappedRegion? sq = null, cq = null, sqes = null;
        try
        {
            ulong sqSize = p.SqArray + p.SqEntries * 4UL;
            ulong cqSize = p.CqCqes + p.CqEntries * (ulong)sizeof(LibC.IoUringCqe);
            bool single = (p.Features & LibC.IORING_FEAT_SINGLE_MMAP) != 0;
            sq = MappedRegion.Map(h, single ? Math.Max(sqSize, cqSize) : sqSize, LibC.IORING_OFF_SQ_RING);
            if (!single) cq = MappedRegion.Map(h, cqSize, LibC.IORING_OFF_CQ_RING);
            sqes = MappedRegion.Map(h, p.SqEntries * (ulong)sizeof(LibC.IoUringSqe), LibC.IORING_OFF_SQES);
            ring = new IoUring(h, p, sq, cq, sqes);
            return 0;
        }
        catch (IOException)
        {
            sqes?.Dispose(); cq?.Dispose(); sq?.Dispose(); h.Dispose();
            return LibC.ENOMEM;
        }
    }

    /// <summary>SQEs prepared but not yet consumed by the kernel.</summary>
    public uint Unsubmitted => _sqLocalTail - Volatile.Read(ref *_sqHead);

    /// <summary>
    /// The next free SQE, zeroed, or null if every entry is prepared or still unconsumed. It belongs to the caller until
    /// the next <see cref="Submit"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public LibC.IoUringSqe* TryGetSqe()
    {
        // Acquire: the kernel has finished reading the SQEs behind its head before we reuse them.
        if (_sqLocalTail - Volatile.Read(ref *_sqHead) >= SqEntries) return null;
        var sqe = &_sqeBase[_sqLocalTail & _sqMask];
        *sqe = default;
        _sqLocalTail++;
        return sqe;
    }

    /// <summary>
    /// Publishes every prepared SQE and starts them with one io_uring_enter; with <paramref name="waitFor"/> &gt; 0 also
    /// waits for that many completions. Returns the number of SQEs the kernel consumed, or -errno (EAGAIN/EBUSY: out of
    /// resources for now, try again; EINTR: interrupted).
    /// </summary>
    public int Submit(uint waitFor = 0)
    {
        // Release: every SQE field written above is visible to the kernel before it sees the tail that covers it.
        Volatile.Write(ref *_sqTail, _sqLocalTail);
        uint toSubmit = Unsubmitted;
        if (toSubmit == 0 && waitFor == 0 && (Volatile.Read(ref *_sqFlags) & SqCqOverflow) == 0) return 0;
        bool added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            // GETEVENTS also flushes completions the kernel kept aside when the CQ was full (IORING_SQ_CQ_OVERFLOW).
            uint flags = waitFor > 0 || (Volatile.Read(ref *_sqFlags) & SqCqOverflow) != 0 ? LibC.IORING_ENTER_GETEVENTS : 0;
            long r = LibC.Syscall(LibC.SYS_io_uring_enter, _fd.Fd, (nint)toSubmit, (nint)waitFor, (nint)flags, 0, 0);
            return r >= 0 ? (int)r : -LibC.Errno;
        }
        finally { if (added) _fd.DangerousRelease(); }
    }

    /// <summary>A copy of the SQE prepared last (tests check what the kernel was given; it stays intact until reused).</summary>
    public LibC.IoUringSqe LastPrepared => _sqeBase[(_sqLocalTail - 1) & _sqMask];

    private const uint SqCqOverflow = 2;   // IORING_SQ_CQ_OVERFLOW

    /// <summary>Completions waiting in the CQ.</summary>
    public uint Ready => Volatile.Read(ref *_cqTail) - *_cqHead;

    /// <summary>Copies up to <paramref name="into"/>.Length completions out of the CQ and frees their slots; no system call.</summary>
    public int Reap(Span<LibC.IoUringCqe> into)
    {
        uint head = *_cqHead;   // only we write the head
        // Acquire: the CQEs up to the tail were written by the kernel before it stored the tail.
        uint tail = Volatile.Read(ref *_cqTail);
        int n = (int)Math.Min(tail - head, (uint)into.Length);
        for (int i = 0; i < n; i++) into[i] = _cqes[(head + (uint)i) & _cqMask];
        // Release: our copies are complete before the kernel may reuse the slots.
        if (n > 0) Volatile.Write(ref *_cqHead, head + (uint)n);
        return n;
    }

    /// <summary>Has the kernel signal <paramref name="eventFd"/> whenever it posts a completion (IORING_REGISTER_EVENTFD, 5.2).</summary>
    public int RegisterEventFd(SafeFd eventFd)
    {
        int efd = eventFd.Fd;
        return Register(LibC.IORING_REGISTER_EVENTFD, &efd, 1);
    }

    /// <summary>
    /// Whether each of <paramref name="ops"/> is supported (IORING_REGISTER_PROBE, 5.6). Returns 0 and the first op
    /// missing (-1 if none), or the errno of the probe (EINVAL: kernel older than 5.6).
    /// </summary>
    public int ProbeOps(ReadOnlySpan<byte> ops, out int missing)
    {
        missing = -1;
        // struct io_uring_probe: 16-byte header, then struct io_uring_probe_op (8 bytes) per opcode.
        const int Ops = 256;
        byte* buf = stackalloc byte[16 + Ops * 8];
        new Span<byte>(buf, 16 + Ops * 8).Clear();
        int e = Register(LibC.IORING_REGISTER_PROBE, buf, Ops);
        if (e != 0) return e;
        byte lastOp = buf[0];
        foreach (byte op in ops)
        {
            ushort flags = *(ushort*)(buf + 16 + op * 8 + 2);
            if (op > lastOp || (flags & LibC.IO_URING_OP_SUPPORTED) == 0) { missing = op; break; }
        }
        return 0;
    }

    private int Register(uint opcode, void* arg, uint nrArgs)
    {
        bool added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            long r = LibC.Syscall(LibC.SYS_io_uring_register, _fd.Fd, (nint)opcode, (nint)arg, (nint)nrArgs, 0, 0);
            return r < 0 ? LibC.Errno : 0;
        }
        finally { if (added) _fd.DangerousRelease(); }
    }

    /// <summary>Unmaps the rings and closes the ring (see the remarks on requests still in flight).</summary>
    public void Dispose()
    {
        _sqes.Dispose();
        _cqRing?.Dispose();
        _sqRing.Dispose();
        _fd.Dispose();
    }
}
