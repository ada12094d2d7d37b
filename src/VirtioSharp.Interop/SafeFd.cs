using System.Runtime.InteropServices;

namespace VirtioSharp.Interop;

/// <summary>An owned file descriptor; closed exactly once when disposed or finalized.</summary>
internal sealed class SafeFd : SafeHandle
{
    public SafeFd(int fd, bool owns = true) : base(-1, owns) => SetHandle(fd);
    public SafeFd() : base(-1, true) { }

    public override bool IsInvalid => handle == -1;
    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => LibC.Close((int)handle) == 0;

    public static SafeFd Invalid => new(-1, false);

    /// <summary>A Unix socket pair of <paramref name="type"/>, both ends close-on-exec.</summary>
    public static unsafe (SafeFd, SafeFd) SocketPair(int type = LibC.SOCK_STREAM)
    {
        int* sv = stackalloc int[2];
        if (LibC.SocketPair(LibC.AF_UNIX, type | LibC.SOCK_CLOEXEC, 0, sv) != 0)
            throw new IOException($"socketpair failed: {LibC.Describe(LibC.Errno)}");
        return (new SafeFd(sv[0]), new SafeFd(sv[1]));
    }

    /// <summary>
    /// A duplicate of <paramref name="h"/> without FD_CLOEXEC (dup never sets it), so a child process inherits it under
    /// the same number: how a manager hands a descriptor to a back-end started with --fd.
    /// </summary>
    public static SafeFd DupInheritable(SafeHandle h)
    {
        bool added = false;
        try
        {
            h.DangerousAddRef(ref added);
            int fd = LibC.Dup((int)h.DangerousGetHandle());
            if (fd < 0) throw new IOException($"dup failed: {LibC.Describe(LibC.Errno)}");
            return new SafeFd(fd);
        }
        finally { if (added) h.DangerousRelease(); }
    }

    /// <summary>st_size of the descriptor (fstat): how much of it can be mapped without SIGBUS on touch.</summary>
    public unsafe long GetSize()
    {
        // struct stat is 144 bytes on x86-64 (128 on arm64); st_size sits at offset 48 on both.
        byte* buf = stackalloc byte[256];
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            if (LibC.FStat(Fd, buf) != 0) throw new IOException($"fstat failed: {LibC.Describe(LibC.Errno)}");
            return *(long*)(buf + 48);
        }
        finally { if (added) DangerousRelease(); }
    }
}
