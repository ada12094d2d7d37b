using VirtioSharp.Interop;
using System.Runtime.InteropServices;

namespace VirtioSharp.VhostUser.Interop;

/// <summary>
/// Checks what a descriptor received from the front-end really is before it is used, and refuses what cannot work
/// with a <see cref="VhostProtocolException"/> that names the descriptor's role and kind. The fd number we hold keeps
/// naming the same open file, so one check on arrival holds for the fd's life.
/// </summary>
internal static unsafe class PeerFd
{
    private const uint S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFBLK = 0x6000, S_IFIFO = 0x1000, S_IFSOCK = 0xC000;

    /// <summary>What /proc says the descriptor is: a path, <c>anon_inode:[eventfd]</c>, <c>pipe:[N]</c>, <c>socket:[N]</c>.</summary>
    public static string WhatIs(SafeFd fd)
    {
        try { return new FileInfo($"/proc/self/fd/{fd.Fd}").LinkTarget ?? "unknown kind"; }
        catch (IOException) { return "unknown kind"; }
        catch (UnauthorizedAccessException) { return "unknown kind"; }
    }

    /// <summary>
    /// A kick, call or err fd must be an eventfd: a regular file, /dev/zero or a pipe would be always readable (a worker
    /// spinning on it) or never writable. It is made non-blocking, so a write to a counter the peer filled fails at
    /// once instead of stalling the ring worker (the flag lives in the shared open file; QEMU's are non-blocking too).
    /// </summary>
    public static void RequireEventFd(SafeFd fd, string role)
    {
        string kind = WhatIs(fd);
        if (kind != "anon_inode:[eventfd]")
            throw new VhostProtocolException($"{role}: the descriptor is {kind}, not an eventfd");
        int flags = LibC.Fcntl(fd.Fd, LibC.F_GETFL, 0);
        if (flags < 0 || ((flags & LibC.O_NONBLOCK) == 0 && LibC.Fcntl(fd.Fd, LibC.F_SETFL, flags | LibC.O_NONBLOCK) < 0))
            throw new VhostProtocolException($"{role}: cannot make the eventfd non-blocking: {LibC.Describe(LibC.Errno)}");
    }

    /// <summary>
    /// A memory fd (region, inflight) must be a regular file (memfd, tmpfs or hugetlbfs file) sealed against shrinking
    /// (F_SEAL_SHRINK): a page past the end of a file the peer truncated is SIGBUS on first touch, which no managed
    /// code can survive. <paramref name="allowUnsealed"/> accepts unsealed files; the caller warns about the risk.
    /// Returns true if the file is sealed.
    /// </summary>
    public static bool RequireSharedMemory(SafeFd fd, string role, bool allowUnsealed)
    {
        uint mode = Mode(fd);
        if ((mode & S_IFMT) != S_IFREG)
            throw new VhostProtocolException($"{role}: the descriptor is {KindOf(mode)} ({WhatIs(fd)}), not a memory file (memfd, tmpfs or hugetlbfs)");
        int seals = LibC.Fcntl(fd.Fd, LibC.F_GET_SEALS, 0);
        bool sealedAgainstShrink = seals >= 0 && (seals & LibC.F_SEAL_SHRINK) != 0;
        if (sealedAgainstShrink || allowUnsealed) return sealedAgainstShrink;
        string why = seals < 0 ? "a file that cannot be sealed" : "a memfd without F_SEAL_SHRINK";
        throw new VhostProtocolException(
            $"{role}: {WhatIs(fd)} is {why}; the front-end could shrink it under the mapping and crash the back-end (SIGBUS). " +
            "Give QEMU -object memory-backend-memfd (sealed by default, seal=on), or start the back-end with --allow-unsealed-memory to accept that risk");
    }

    /// <summary>The back-end channel must be a connected Unix stream socket.</summary>
    public static void RequireConnectedStreamSocket(SafeFd fd, string role)
    {
        bool listening;
        try { listening = InheritedSocket.IsListening(fd.Fd); }
        catch (ArgumentException e) { throw new VhostProtocolException($"{role}: {e.Message}"); }
        catch (IOException e) { throw new VhostProtocolException($"{role}: {e.Message}"); }
        if (listening) throw new VhostProtocolException($"{role}: the descriptor is a listening socket, not a connected one");
    }

    /// <summary>st_mode from fstat.</summary>
    public static uint Mode(SafeFd fd)
    {
        // st_mode sits at offset 24 in x86-64's struct stat and at 16 in the generic layout (arm64).
        int offset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        byte* buf = stackalloc byte[256];
        bool added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            if (LibC.FStat(fd.Fd, buf) != 0) throw new VhostProtocolException($"fstat failed: {LibC.Describe(LibC.Errno)}");
            return *(uint*)(buf + offset);
        }
        finally { if (added) fd.DangerousRelease(); }
    }

    private static string KindOf(uint mode) => (mode & S_IFMT) switch
    {
        S_IFDIR => "a directory",
        S_IFCHR => "a character device",
        S_IFBLK => "a block device",
        S_IFIFO => "a pipe",
        S_IFSOCK => "a socket",
        0 => "an anonymous inode",
        _ => $"file type 0x{mode & S_IFMT:x}",
    };
}
